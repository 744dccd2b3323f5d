"""A local Hugging Face causal LM as a :class:`~greenserv_core.backends.ModelBackend`.

* Loads lazily on first use, on CUDA when present (bf16/fp16) else the CPU (fp32), within a
  shared memory budget (least-recently-used idle models are unloaded beyond it).
* Uses the tokenizer's chat template when it has one, else the documented plain format
  (:mod:`greenserv_core.backends.prompt_format`), which stops at the next turn marker.
* Greedy (``temperature == 0``) or sampled decoding (``top_p`` over the whole vocabulary, as
  OpenAI's API samples: no top-k), ``max_new_tokens``, multi-token stop strings, looked for in
  the new text only (the text is cut before the stop string).
* Loads quietly: transformers' progress bars are off while the weights load.
* Exact token counts: the prompt's tokens, and the tokens generated up to and including EOS
  or the token that completed a stop string (a batch's padding after it is not counted).
* Energy: one meter window around each generation, holding the device's lock, so a
  device-wide counter sees one generation. Batches split a window's joules by token share.
* Concurrent ``generate`` calls (LangChain ``batch``, several users) are coalesced into
  padded batches while the device is busy. Each call's prompt is checked in its own thread
  first; a batch that fails is run again one call at a time, so one bad call fails alone; a
  sampled call with a ``seed`` runs alone, so that its answer does not depend on the load.
* A stream generates in a worker thread that holds the device and the meter's window; the
  caller only reads the pieces, so the answer's seconds and joules are the generation's, and
  the caller may use other models of the device while it reads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenserv_core.backends.abandoned import report_abandoned
from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelInfo, StreamChunk
from greenserv_core.backends.devices import cuda_index, device_lock, pick_device, pick_dtype
from greenserv_core.backends.memory import ModelMemory, default_memory
from greenserv_core.backends.prompt_format import (
    StopBuffer,
    fold_system_into_user,
    plain_prompt,
    tool_turns_as_user,
    truncate_answer,
)
from greenserv_core.backends.registry import register_address_scheme
from greenserv_core.energy.base import EnergyMeter, EnergyReading
from greenserv_core.energy.registry import make_meter, with_fallback
from greenserv_core.errors import (
    BatchItemsUnavailableError,
    InvalidInputError,
    MissingResourceError,
    ModelUnavailableError,
)
from greenserv_core.messages import Message, validate_messages
from greenserv_core.models.spec import ModelSpec
from greenserv_core.quiet_loading import quiet_loading
from greenserv_core.tools.calls import tool_result_text
from greenserv_core.tools.spec import ToolSpec, with_tools_prompt

__all__ = ["TransformersBackend", "directory_backend"]

logger = logging.getLogger("greenserv")

_TAIL_TOKENS = 24  # enough tokens to hold a turn marker ("\n" + a word of up to 20 letters + ":")


@dataclass
class _Ticket:
    prompt: str
    settings: GenerationSettings
    done: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: BaseException | None = None


@dataclass
class _Loaded:
    model: Any
    size_bytes: int


class TransformersBackend:
    """Serve one :class:`ModelSpec` with transformers, on ``device`` (default: ``cuda`` where
    a GPU is visible, else ``cpu``) in ``dtype`` (a torch floating-point dtype's name; default
    or ``"auto"``: bfloat16 or float16 on a GPU, float32 on the CPU). Both are checked when the
    backend is made; the weights load at the first answer.

    >>> backend = TransformersBackend(ModelSpec("smol", path="/path/to/model"))  # doctest: +SKIP
    >>> backend.generate([{"role": "user", "content": "Hi"}], GenerationSettings(max_new_tokens=8))  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: str | None = None,
        dtype: str | None = None,
        meter: EnergyMeter | str = "auto",
        memory: ModelMemory | None = None,
    ) -> None:
        self.spec = spec
        self.device = pick_device(device)
        if dtype not in (None, "auto"):  # refused here, not as a model that cannot load at the first answer
            pick_dtype(self.device, dtype)
        self.dtype_name = dtype
        self._meter_spec = meter
        # a meter given as an object falls back to the labelled estimate too, so a failed read
        # never throws a finished answer away
        self._meter: EnergyMeter | None = with_fallback(meter) if not isinstance(meter, str) else None
        self.memory = memory if memory is not None else default_memory()
        self._tokenizer: Any = None
        self._loaded: _Loaded | None = None
        self._eos: frozenset[int] | None = None
        """The end-of-sequence token ids, read at the first load (they outlive an unload)."""
        self._info: ModelInfo | None = None
        self._load_lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self.load_seconds: float | None = None
        self.coalesced_batches = 0  # model.generate calls made by generate()

    # ---- metadata ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._load_lock:
                if self._tokenizer is None:
                    from transformers import AutoTokenizer

                    options = self._source_options()
                    try:
                        tokenizer = AutoTokenizer.from_pretrained(self.spec.source, **options)
                    except (OSError, ValueError) as error:  # ValueError: a folder transformers cannot read
                        raise self._cannot_load(error) from error
                    if tokenizer.pad_token is None:
                        tokenizer.pad_token = tokenizer.eos_token
                    tokenizer.padding_side = "left"
                    self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def uses_chat_template(self) -> bool:
        """Whether prompts go through the tokenizer's chat template (the spec's
        ``chat_template``, else whether the tokenizer has one)."""
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if self.spec.chat_template and not has_template:  # (else every conversation failed as bad input)
            raise InvalidInputError(
                f"model {self.name!r}: its spec sets chat_template=True, but its tokenizer has no chat "
                "template; leave chat_template unset (or False) to use the plain prompt format"
            )
        return has_template if self.spec.chat_template is None else self.spec.chat_template

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            window = self.spec.context_window
            if window is None:
                from transformers import AutoConfig

                options = self._source_options()
                try:
                    config = AutoConfig.from_pretrained(self.spec.source, **options)
                except (OSError, ValueError) as error:
                    raise self._cannot_load(error) from error
                text_config = getattr(config, "text_config", config)
                window = int(getattr(text_config, "max_position_embeddings", 2048) or 2048)
            capabilities = set(self.spec.capabilities)
            if self.uses_chat_template:
                capabilities.add("chat_template")
            if self.template_takes_tools:
                capabilities.add("tools")
            if self.template_takes_system:
                capabilities.add("system_role")
            self._info = ModelInfo(
                name=self.name,
                context_window=window,
                capabilities=frozenset(capabilities),
                prior_joules_per_token=self.spec.prior_joules_per_token,
                quality=self.spec.quality,
                prior_seconds_per_token=self.spec.prior_seconds_per_token,
            )
        return self._info

    @property
    def meter(self) -> EnergyMeter:
        if self._meter is None:
            assert isinstance(self._meter_spec, str)
            cuda = [cuda_index(self.device)] if self.device.startswith("cuda") else []
            self._meter = make_meter(self._meter_spec, cuda)
        return self._meter

    # ---- loading ----------------------------------------------------------------------
    def _cannot_load(self, error: Exception) -> MissingResourceError:
        """What a failed load says: the model, where from, how to install it, and why."""
        return MissingResourceError(f"cannot load model {self.name!r} from {self.spec.source}{self._hint()}: {error}")

    def _hint(self) -> str:
        """The spec's install hint, in brackets after a space (``""`` without one)."""
        return f" ({self.spec.install_hint})" if self.spec.install_hint else ""

    def _source_options(self) -> dict[str, Any]:
        """``from_pretrained``'s options; a spec's ``path`` must be a directory here, never looked up on the Hub."""
        if self.spec.path is None:
            return {"gguf_file": self.spec.gguf_file}
        if not Path(self.spec.path).is_dir():
            where = self.spec.path
            if not os.path.isabs(where):
                where += f" ({os.path.abspath(where)})"
            raise MissingResourceError(f"cannot load model {self.name!r}: no model directory at {where}{self._hint()}")
        return {"gguf_file": self.spec.gguf_file, "local_files_only": True}

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> Any:
        """Load the weights (first use does this for you); returns the model."""
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded.model
            from safetensors import SafetensorError
            from transformers import AutoModelForCausalLM

            options = self._source_options()
            dtype = pick_dtype(self.device, self.dtype_name)
            started = time.perf_counter()
            try:
                with quiet_loading():
                    model = AutoModelForCausalLM.from_pretrained(self.spec.source, dtype=dtype, **options)
            except (OSError, ValueError, SafetensorError) as error:  # (the last: a weights file cut short)
                raise self._cannot_load(error) from error
            model = model.to(self.device).eval()  # type: ignore[arg-type]
            self.load_seconds = time.perf_counter() - started
            size = sum(p.numel() * p.element_size() for p in model.parameters())
            self._loaded = _Loaded(model, size)
            eos = model.generation_config.eos_token_id
            ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
            if self.tokenizer.eos_token_id is not None:
                ids.add(self.tokenizer.eos_token_id)
            self._eos = frozenset(ids)
            logger.info("loaded %s on %s in %.1f s (%.0f MB)", self.name, self.device, self.load_seconds, size / 2**20)
        self.memory.loaded(self, size)
        return model

    def unload(self) -> None:
        """Free the weights (they are loaded again on next use)."""
        with self._load_lock:
            self._loaded = None
        self.memory.forget(self)
        try:
            import torch

            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # ---- prompts ----------------------------------------------------------------------
    @property
    def template_takes_tools(self) -> bool:
        """Whether the chat template renders a ``tools`` list itself (Hermes, Qwen-2.5, Llama-3.x …)."""
        template = getattr(self.tokenizer, "chat_template", None)
        return self.uses_chat_template and isinstance(template, str) and "tools" in template

    @functools.cached_property
    def template_takes_system(self) -> bool:
        """Whether the chat template accepts a system message (tried once; the plain format
        does). If the probe fails, a warning says why, and system text goes into the first
        user turn from then on."""
        if not self.uses_chat_template:
            return True
        marker = "greenserv-system-probe"
        probe = [{"role": "system", "content": marker}, {"role": "user", "content": "u"}]
        try:
            rendered = self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception as error:  # jinja2 TemplateError from the template's raise_exception, or a broken template
            logger.warning(
                "%s: the chat template refused a system message (%s: %s); system text goes into the first user turn",
                self.name,
                type(error).__name__,
                error,
            )
            return False
        if marker not in str(rendered):
            logger.warning(
                "%s: the chat template drops system messages; system text goes into the first user turn", self.name
            )
            return False
        return True

    @functools.cached_property
    def template_takes_tool_turns(self) -> bool:
        """Whether the chat template renders a ``tool`` turn (tried once; the plain format
        does). Where it does not (it drops the turn, or refuses the role), tool results go to
        the model as user turns."""
        if not self.uses_chat_template:
            return True
        marker = "greenserv-tool-probe"
        probe = [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "tool", "content": marker},
        ]
        try:
            rendered = self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # jinja2 TemplateError: roles must alternate, or an unknown role
            return False
        return marker in str(rendered)

    def render(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> str:
        """The exact prompt text the model sees. ``tools`` go through the chat template when it
        takes them, else into the system message in the Hermes format. For a template without
        a system role, the system text opens the first user message instead; for one without a
        ``tool`` role, tool results are user turns. A template that renders tools itself wraps
        a tool's result in its own markup, so the result goes to it unwrapped."""
        clean = validate_messages(messages)  # a bare string is one user message
        native_tools = bool(tools) and self.template_takes_tools
        if tools and not native_tools:
            clean = with_tools_prompt(clean, tools)
        if not self.template_takes_system:
            clean = fold_system_into_user(clean)
        if any(m["role"] == "tool" for m in clean):
            if not self.template_takes_tool_turns:
                clean = tool_turns_as_user(clean)
            elif self.uses_chat_template and self.template_takes_tools:
                clean = [  # type: ignore[misc]
                    {**m, "content": tool_result_text(m["content"])} if m["role"] == "tool" else m for m in clean
                ]
        if not self.uses_chat_template:
            return plain_prompt(clean)
        extra: dict[str, Any] = {"tools": [t.to_openai() for t in tools]} if native_tools else {}
        try:
            text: str = self.tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=True, **extra)
        except Exception as error:  # jinja2 TemplateError: e.g. a template without a system role
            raise InvalidInputError(f"model {self.name!r} cannot take these messages: {error}") from error
        return text

    def _encode(self, texts: list[str]) -> dict[str, Any]:
        # a chat template already holds the special tokens (BOS); a plain prompt needs them added.
        # Only ids and mask go to generate (some tokenizers add token_type_ids, which LMs refuse).
        encoded = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not self.uses_chat_template
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _to_device(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {key: value.to(self.device) for key, value in encoded.items()}

    def _length(self, text: str) -> int:
        """The number of tokens the model gets for the prompt ``text``, as :meth:`_encode`
        counts it. A fast tokenizer's own encoder counts it without the tensors (about half
        the time; counting is most of a route on local models) unless it is set to truncate, or
        to pad to a length or a multiple of one (a saved ``tokenizer.json`` may say so; HF's own
        call sets both off); then :meth:`_encode` counts."""
        special = not self.uses_chat_template
        encoder = getattr(self.tokenizer, "backend_tokenizer", None)
        padding = (encoder.padding or {}) if encoder is not None else {}
        pads = padding.get("length") or padding.get("pad_to_multiple_of")
        if encoder is not None and encoder.truncation is None and not pads:
            return len(encoder.encode(text, add_special_tokens=special))
        return len(self._encode([text])["input_ids"][0])

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self._length(self.render(messages))

    def token_bound(self, messages: Sequence[Message]) -> int:
        """An upper bound on :meth:`count_tokens` with no tokenizer run: twice the rendered
        prompt's UTF-8 bytes, plus 16 (a token holds at least one byte or one character; the
        factor covers a normaliser that lengthens text, the 16 the special tokens). The router
        counts exactly only where this bound might not fit the context window
        (:class:`~greenserv_core.routing.pool.BoundsTokenCounts`); a prompt that still does not
        fit is refused before the model runs, and the router tries another."""
        return 2 * len(self.render(messages).encode("utf-8", "surrogatepass")) + 16

    def _fitting_prompt(self, messages: Sequence[Message], settings: GenerationSettings) -> str:
        """The rendered prompt, if it and ``max_new_tokens`` fit the context window: the
        router counts the messages (:meth:`count_tokens`), but the template and offered tools
        add to them here, so a prompt that no longer fits makes the model unavailable for the
        query (the router then tries one with a longer context) instead of running past its
        window."""
        prompt = self.render(messages, settings.tools)
        length = self._length(prompt)
        if length + settings.max_new_tokens > self.info.context_window:
            with_tools = " with its tools" if settings.tools else ""
            raise ModelUnavailableError(
                f"{self.name}: the prompt{with_tools} is {length} tokens; with max_new_tokens "
                f"{settings.max_new_tokens} it exceeds the context window of {self.info.context_window}"
            )
        return prompt

    @property
    def stops_at_turn_markers(self) -> bool:
        """Whether answers end at the plain format's next turn marker (models without a chat template)."""
        return not self.uses_chat_template

    def _stop_criteria(self, width: int, stops: Sequence[str]) -> Any:
        """A stopping criterion for rows whose new text (after ``width`` prompt tokens) holds a
        stop string (or a turn marker, for the plain format). Only the new tokens are read:
        transformers' own ``stop_strings`` also match text that begins in the prompt."""
        import torch
        from transformers import StoppingCriteria

        tokenizer, markers, strip = self.tokenizer, self.stops_at_turn_markers, not self.uses_chat_template
        tail = max([_TAIL_TOKENS if markers else 0, *(4 * len(stop) + 8 for stop in stops)])

        class StopCriteria(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                new = input_ids[:, width:]
                tails = tokenizer.batch_decode(new[:, -tail:], skip_special_tokens=True)
                whole = new.shape[1] <= tail  # the tail is the whole answer, and begins with its leading space
                stopped = [
                    truncate_answer(text, stops, turn_markers=markers, strip_leading=strip and whole)[1]
                    for text in tails
                ]
                return torch.tensor(stopped, dtype=torch.bool, device=input_ids.device)

        return StopCriteria()

    def _generate_kwargs(self, settings: GenerationSettings, stops: list[str], width: int) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        criteria = [self._stop_criteria(width, stops)] if stops or self.stops_at_turn_markers else []
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList(criteria),
        }
        if settings.temperature > 0:  # top_k 0: the whole vocabulary, not transformers' default 50
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.max_time_s is not None:
            kwargs["max_time"] = settings.max_time_s
        if settings.logprobs:
            kwargs.update(output_scores=True, return_dict_in_generate=True)
        return kwargs

    @staticmethod
    def _token_logprobs(output: Any, settings: GenerationSettings, width: int) -> tuple[Any, Any]:
        """``(sequences, per-token log-probabilities or None)`` of ``model.generate``'s output,
        which is a plain tensor unless ``logprobs`` asked for the scores too. The scores are
        those the tokens were chosen from (after the model's logits processors, as in
        ``compute_transition_scores``); each step's row is reduced to its chosen token at once."""
        if not settings.logprobs:
            return output, None
        import torch

        sequences = output.sequences
        chosen = sequences[:, width:]
        steps = [
            torch.log_softmax(scores.float(), dim=-1).gather(1, chosen[:, step : step + 1])
            for step, scores in enumerate(output.scores)
        ]
        return sequences, torch.cat(steps, dim=1).cpu()

    def _new_token_counts(self, generated: Any) -> list[int]:
        """Tokens generated per row, up to and including the first EOS. Padding is excluded: a
        row that stopped early (a stop string, a turn marker) is padded to the batch's length,
        after its end; a pad token the model itself wrote before that is one of its tokens."""
        eos = self._eos_ids()
        pad = self.tokenizer.pad_token_id
        counts = []
        for row in generated.tolist():
            end = len(row)
            if pad is not None and pad not in eos:
                while end and row[end - 1] == pad:
                    end -= 1
            first_eos = next((i for i, token in enumerate(row[:end]) if token in eos), None)
            counts.append(end if first_eos is None else first_eos + 1)
        return counts

    def _outcome(self, row: Any, counted: int, stops: Sequence[str]) -> tuple[str, int, str, int]:
        """One row's ``(text, output tokens, finish reason, answer tokens)`` from its generated
        ids and :meth:`_new_token_counts`' count. A row that stopped at a stop string counts the
        tokens up to the one that completed it (a batch pads such a row, and a pad that is also
        the EOS token is not the row's); it finishes ``"stop"`` then, or at EOS, else
        ``"length"`` (the token limit, or ``max_time_s``). Its answer tokens, whose
        log-probabilities it reports, are then the fewest whose text holds the cut text; an
        answer that ended at EOS leaves the EOS token out (it is counted, not the answer's)."""
        markers, strip = self.stops_at_turn_markers, not self.uses_chat_template

        def decoded(n: int) -> str:
            return str(self.tokenizer.decode(row[:n], skip_special_tokens=True))

        def cut(n: int) -> tuple[str, bool]:
            return truncate_answer(decoded(n), stops, turn_markers=markers, strip_leading=strip)

        def fewest(holds: Callable[[int], bool], low: int, high: int) -> int:
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if holds(middle) else (middle + 1, high)
            return high

        text, stopped = cut(counted)
        answer = counted
        if stopped:  # the fewest tokens whose text holds the stop, and the fewest that hold the answer
            counted = fewest(lambda n: cut(n)[1], 1, counted)
            answer = fewest(lambda n: (decoded(n).lstrip() if strip else decoded(n)).startswith(text), 0, counted)
        ended = counted > 0 and int(row[counted - 1]) in self._eos_ids()
        if ended and answer == counted:  # the end-of-sequence token is no part of the answer
            answer -= 1
        return text, counted, "stop" if stopped or ended else "length", answer

    def _eos_ids(self) -> frozenset[int]:
        """The end-of-sequence ids (read at load: an answer counted after its model was
        unloaded does not load it again)."""
        if self._eos is None:
            self.load()
        assert self._eos is not None
        return self._eos

    # ---- generation -------------------------------------------------------------------
    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        """One answer. Concurrent calls with equal settings are coalesced: whoever holds the
        device runs every request queued meanwhile as one padded batch (a call that finds the
        device free runs at once, alone). The prompt is checked here, in the caller's thread;
        a batch that fails is run again one call at a time; a sampled call with a ``seed``
        runs alone (its draws would otherwise depend on the batch it fell into)."""
        ticket = _Ticket(self._fitting_prompt(messages, settings), settings)
        if _seeded_sample(settings):
            with device_lock(self.device):
                self._run_group([ticket], settings)
        else:
            with self._queue_lock:
                self._queue.append(ticket)
            with device_lock(self.device):
                if not ticket.done.is_set():
                    with self._queue_lock:
                        group = [t for t in self._queue if t.settings == settings]
                        self._queue = [t for t in self._queue if t.settings != settings]
                    self._run_group(group if ticket in group else [ticket], settings)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def _run_group(self, group: list[_Ticket], settings: GenerationSettings) -> None:
        """Answer ``group`` as one batch; if it fails, each ticket alone (so one failing call
        does not fail the others); every ticket is done afterwards."""
        try:
            self.coalesced_batches += 1
            results = self._generate_prompts([t.prompt for t in group], settings)
        except Exception as error:
            if len(group) > 1:
                try:
                    for ticket in group:
                        self._run_group([ticket], settings)
                except BaseException as stopped:  # an interrupt in the retries stops the rest too
                    for ticket in group:
                        if not ticket.done.is_set():
                            ticket.error = stopped
                            ticket.done.set()
                    raise
                return
            group[0].error = error
            group[0].done.set()
            return
        except BaseException as error:  # an interrupt stops them all
            for ticket in group:
                ticket.error = error
                ticket.done.set()
            raise
        for ticket, result in zip(group, results, strict=True):
            ticket.result = result
            ticket.done.set()

    def generate_batch(
        self, batch: Sequence[Sequence[Message]], settings: GenerationSettings
    ) -> list[GenerationResult]:
        """Generate for several conversations in one padded batch; joules split by token share.
        A sampled batch with a ``seed`` runs one conversation at a time, each seeded, so that
        its answers are those :meth:`generate` gives (they would otherwise depend on the batch).
        Conversations whose prompt does not fit the context window are refused together, before
        anything runs (:class:`BatchItemsUnavailableError`): the router answers them elsewhere
        and the rest here."""
        if not batch:
            return []
        prompts, unfit = [], {}
        for index, messages in enumerate(batch):
            try:
                prompts.append(self._fitting_prompt(messages, settings))
            except ModelUnavailableError as error:  # the others still fit: only these go elsewhere
                unfit[index] = str(error)
        if unfit:
            raise BatchItemsUnavailableError(unfit)
        with device_lock(self.device):
            if _seeded_sample(settings):  # as generate(): each draw its own
                return [self._generate_prompts([prompt], settings)[0] for prompt in prompts]
            return self._generate_prompts(prompts, settings)

    def _generate_prompts(self, prompts: Sequence[str], settings: GenerationSettings) -> list[GenerationResult]:
        """Answer rendered ``prompts`` as one padded batch (the device's lock is held)."""
        import torch

        stops = list(settings.stop)
        self.memory.acquire(self)
        try:
            meter = self.meter  # before the weights load: a meter that cannot work here fails first
            model = self.load()
            encoded = self._to_device(self._encode(list(prompts)))
            input_counts = [int(n) for n in encoded["attention_mask"].sum(dim=1).tolist()]
            width = encoded["input_ids"].shape[1]
            with _seeded(settings):
                started = time.perf_counter()
                with meter.measure() as window, torch.inference_mode():
                    output = model.generate(**encoded, **self._generate_kwargs(settings, stops, width))
                latency = time.perf_counter() - started
        finally:
            self.memory.release(self)
        sequences, logprobs = self._token_logprobs(output, settings, width)
        generated = sequences[:, width:]
        output_counts = self._new_token_counts(generated)
        results = []
        outcomes = [self._outcome(generated[row], n, stops) for row, n in enumerate(output_counts)]
        output_counts = [n for _, n, _, _ in outcomes]
        totals = [i + o for i, o in zip(input_counts, output_counts, strict=True)]
        for row, (n_in, (text, n_out, finish, n_answer)) in enumerate(zip(input_counts, outcomes, strict=True)):
            share = totals[row] / sum(totals)
            results.append(
                GenerationResult(
                    text=text,
                    input_tokens=n_in,
                    output_tokens=n_out,
                    latency_s=latency,
                    energy=EnergyReading(window.joules * share, source=window.source, measured=window.measured),
                    finish_reason=finish,
                    token_logprobs=None
                    if logprobs is None
                    else self._answer_logprobs(generated[row], logprobs[row], n_answer),
                )
            )
        return results

    def _answer_logprobs(self, tokens: Any, logprobs: Any, n_answer: int) -> tuple[float, ...]:
        """The log-probabilities of an answer's ``n_answer`` tokens (a stop string's or turn
        marker's tokens are not the answer's), lined up with its text: the plain format's
        answer loses its leading whitespace, and with it the log-probabilities of the tokens
        that are whitespace only (a confidence read from the first token would read a newline's)."""
        start = 0
        if not self.uses_chat_template:
            while start < n_answer and not self.tokenizer.decode([int(tokens[start])]).strip():
                start += 1
        return tuple(logprobs[start:n_answer].tolist())

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        """Stream text through ``TextIteratorStreamer``; same energy and token accounting as
        :meth:`generate`. A worker thread generates holding the device's lock and the meter's
        window, so the seconds and joules are the generation's however slowly the pieces are
        read, and the caller may use the device's other models meanwhile. Closing the iterator
        early stops generation."""
        import torch
        from transformers import StoppingCriteria, TextIteratorStreamer

        prompt = self._fitting_prompt(messages, settings)
        stops = list(settings.stop)
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        self.memory.acquire(self)
        try:
            meter = self.meter  # before the weights load: a meter that cannot work here fails first
            model = self.load()
            encoded = self._to_device(self._encode([prompt]))
            n_in = int(encoded["attention_mask"].sum())
            width = encoded["input_ids"].shape[1]
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            kwargs = self._generate_kwargs(settings, stops, width)
            kwargs["stopping_criteria"].append(_Cancel())
            kwargs["streamer"] = streamer
            outcome: dict[str, Any] = {}

            def run() -> None:
                try:
                    with device_lock(self.device), _seeded(settings):
                        started = time.perf_counter()
                        with meter.measure() as window, torch.inference_mode():
                            outcome["output"] = model.generate(**encoded, **kwargs)
                        outcome["latency"] = time.perf_counter() - started
                        outcome["energy"] = window.reading()
                except BaseException as error:
                    outcome["error"] = error
                    streamer.on_finalized_text("", stream_end=True)

            thread = threading.Thread(target=run, name=f"greenserv-stream-{self.name}", daemon=True)
            thread.start()
            buffer = StopBuffer(  # the plain format's answer begins after its leading space, as in generate()
                stops, turn_markers=self.stops_at_turn_markers, strip_leading=not self.uses_chat_template
            )
            emitted: list[str] = []
            abandoned = False
            try:
                for piece in streamer:
                    out = buffer.push(piece)
                    if out:
                        emitted.append(out)
                        yield StreamChunk(delta=out)
                    if buffer.stopped:
                        cancelled.set()
                tail = buffer.flush()
                if tail:
                    emitted.append(tail)
                    yield StreamChunk(delta=tail)
            except GeneratorExit:
                abandoned = True
                raise
            finally:
                cancelled.set()
                thread.join()
                if abandoned and "energy" in outcome:  # generation stopped: what it spent until then
                    report_abandoned(outcome["energy"], outcome["latency"])
        finally:
            self.memory.release(self)
        if "error" in outcome:
            raise outcome["error"]
        sequences, logprobs = self._token_logprobs(outcome["output"], settings, width)
        generated = sequences[:, width:]
        _, n_out, finish, n_answer = self._outcome(generated[0], self._new_token_counts(generated)[0], stops)
        yield StreamChunk(
            delta="",
            result=GenerationResult(
                text="".join(emitted),
                input_tokens=n_in,
                output_tokens=n_out,
                latency_s=outcome["latency"],
                energy=outcome["energy"],
                finish_reason="stop" if buffer.stopped else finish,
                token_logprobs=None if logprobs is None else self._answer_logprobs(generated[0], logprobs[0], n_answer),
            ),
        )


_SEEDING = threading.Lock()
"""Held by a seeded generation from its seed to its last draw: ``torch.manual_seed`` seeds the
random streams of every device, so a seeded call on another device (whose own lock is another)
would reseed this one's mid-answer."""


@contextlib.contextmanager
def _seeded(settings: GenerationSettings) -> Iterator[None]:
    """Seed torch's random streams for a seeded generation, holding :data:`_SEEDING` until it
    ends; nothing for an unseeded one."""
    if settings.seed is None:
        yield
        return
    import torch

    with _SEEDING:
        torch.manual_seed(settings.seed)
        yield


def _seeded_sample(settings: GenerationSettings) -> bool:
    """Whether ``settings`` sample with a seed: such an answer is drawn alone, so that its
    draws do not depend on the batch it would fall into."""
    return settings.seed is not None and settings.temperature > 0


@register_address_scheme(
    "directory", lambda address: Path(address).is_dir(), describes="a local model directory", priority=-10
)
def directory_backend(address: str, meter: str = "auto") -> TransformersBackend:
    """A local Hugging Face model directory, named after the folder.

    >>> directory_backend("/models/qwen2.5-0.5b").name
    'qwen2.5-0.5b'
    """
    where = os.path.abspath(address)  # "." too; and the folder meant now, wherever the process moves later
    return TransformersBackend(ModelSpec(Path(where).name, path=where), meter=meter)

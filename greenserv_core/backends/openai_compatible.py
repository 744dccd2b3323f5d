"""A remote model as an arm: any server with the OpenAI chat-completions API.

vLLM, Hugging Face TGI and ``transformers serve``, llama.cpp's server and Ollama all serve
``POST /v1/chat/completions``. :class:`OpenAICompatibleBackend` calls one model there:

* **timeouts**: ``connect_timeout_s`` to connect, ``timeout_s`` for each read of a stream
  (so a stream may run longer, but never stalls longer than that between pieces), and
  ``request_timeout_s`` for a whole answer that is not streamed (it arrives in one read,
  after the whole generation);
* **retries** with exponential backoff and jitter (via ``tenacity``) on connection errors,
  timeouts, HTTP 408, 425, 429 and any 5xx. A streamed answer is retried only until its first piece
  arrives: text already handed out is never taken back. An answer that is not streamed is
  not asked again once it timed out (here, or at a gateway: HTTP 504), since the server may
  still be generating it;
* **errors the server reports** after its 200 status (an ``error`` event in a stream, as vLLM
  and llama.cpp's server send, or an ``error`` body) fail the answer, never pass as an empty
  one; a wrong key, address or model id (HTTP 401, 403, 404) and a prompt longer than the
  server's context (HTTP 400 naming it) make the model unavailable for the query, so the
  router routes around it;
* **cooldown**: after ``failure_threshold`` consecutive failed attempts the model reports
  ``available = False`` for ``cooldown_s`` seconds, and the router routes around it;
* **tokens** from the server's ``usage``; where a server sends none, a length estimate;
* **energy** as :mod:`~greenserv_core.energy.remote` describes: reported by the server,
  from an energy meter around the request (a GPU exporter's counter), or an estimate
  labelled as one;
* **stop sequences**: the first ``max_stop_sequences`` (4, OpenAI's limit) go to the server;
  any more end the answer here, at the first of them in its text (what the server generated
  past it is still counted; a streamed answer is closed there);
* **JSON mode**: a request with ``GenerationSettings.json`` sends OpenAI's
  ``response_format`` (``json_object``, or ``json_schema`` with the schema, its name and
  ``strict``). Declare the ``json_mode`` capability for servers that constrain decoding to it
  (vLLM, TGI, llama.cpp's server, Ollama).

Failures raise :class:`~greenserv_core.errors.ModelUnavailableError`; a request the server
rejects as malformed (any other HTTP 4xx) raises
:class:`~greenserv_core.errors.InvalidInputError` and does not count against the model.
``finish_reason`` is ``"stop"``, ``"length"``, ``"content_filter"`` (the server's filter cut the
answer) or ``"refusal"`` (the model refused; the refusal's text is the answer's text); a
generation the server gave up on (vLLM's ``"abort"`` or ``"error"``) fails. A message's
``content`` may be text or a list of content parts (their text parts are the answer).
``max_tokens_field="max_completion_tokens"`` names the token limit as OpenAI's reasoning
models require (vLLM takes either), and ``send_sampling=False`` leaves out ``temperature``
and ``top_p``, which those models refuse unless at their defaults.
``strict_json_schema=True`` sends ``"strict": true`` with a JSON schema, without which OpenAI
does not enforce it (it then requires every property to be required and
``additionalProperties`` false). JSON mode without a schema says "Answer in JSON." first when
no message mentions JSON, as OpenAI requires. The credentials are given once: ``api_key=``,
an ``Authorization`` header or a user and password in ``base_url``; with none of them,
``$OPENAI_API_KEY`` is sent to ``https://api.openai.com`` (that host only). A streamed
answer's energy is never read from its headers, which come before the generation. Tests use
``transport=httpx.MockTransport(...)``.

>>> import httpx
>>> def server(request: httpx.Request) -> httpx.Response:
...     return httpx.Response(200, json={
...         "choices": [{"message": {"content": "4"}, "finish_reason": "stop"}],
...         "usage": {"prompt_tokens": 12, "completion_tokens": 1}})
>>> backend = OpenAICompatibleBackend("http://gpu-1:8000/v1", "qwen2.5-7b",
...                                   transport=httpx.MockTransport(server))
>>> result = backend.generate([{"role": "user", "content": "2+2?"}], GenerationSettings())
>>> result.text, result.input_tokens, result.energy.source
('4', 12, 'estimate-latency-x-300W')
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from greenserv_core.backends.abandoned import report_abandoned
from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelInfo, StreamChunk
from greenserv_core.backends.circuit import CircuitBreaker
from greenserv_core.backends.event_stream import (
    DeadlineGuard,
    data_joined,
    event_lines,
    joined_tool_calls,
    merge_tool_call_delta,
    prepend,
    until_late,
)
from greenserv_core.backends.prompt_format import StopBuffer, tool_turns_as_user, truncate_at_stop
from greenserv_core.backends.registry import register_address_scheme
from greenserv_core.bandits.base import check_number
from greenserv_core.energy.base import (
    CounterDidNotMoveError,
    EnergyMeter,
    EnergyReading,
    EnergyWindow,
    combined_energy,
)
from greenserv_core.energy.remote import OverlapShares, estimated_energy, reported_energy
from greenserv_core.errors import InvalidInputError, ModelUnavailableError
from greenserv_core.messages import Message
from greenserv_core.quality import QualityPrior
from greenserv_core.redaction import redacted
from greenserv_core.tools.calls import split_tool_calls, tool_result_text

__all__ = ["OpenAICompatibleBackend", "remote_backend", "server_named"]

logger = logging.getLogger("greenserv")

_CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English with BPE tokenisers
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_SETUP_STATUS = {401, 403, 404}  # a wrong key, address or model id: the arm's setup, not the query
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context size",
    "context window",
    "maximum context",
    "must be <=",  # TGI: "`inputs` tokens + `max_new_tokens` must be <= N"
    "must have less than",  # TGI: "`inputs` must have less than N tokens"
)
_CONTEXT_STATUS = {400, 413, 422}  # vLLM and OpenAI say 400; TGI 422 ("inputs tokens + max_new_tokens must be <= N")
_FINISH_REASONS = {"length", "content_filter", "refusal"}  # kept as the server said; any other is "stop"
_FAILED_FINISH = {"abort", "error"}  # vLLM's: a generation the server gave up on, no answer
_T = TypeVar("_T")


class _Transient(Exception):
    """A failed attempt worth retrying, after ``retry_after`` seconds where the server said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_LONGEST_RETRY_AFTER_S = 60.0
"""The longest ``Retry-After`` honoured (as OpenAI's client does); a longer one is not waited for."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a server asks for before the next attempt: ``retry-after-ms``, else (not said,
    or not readable) ``Retry-After`` in seconds or as an HTTP date (``None``: neither readable).

    >>> _retry_after({"retry-after": "2"}), _retry_after({"retry-after-ms": "1500"}), _retry_after({})
    (2.0, 1.5, None)
    >>> _retry_after({"retry-after-ms": "n/a", "retry-after": "1"})
    1.0
    """
    with contextlib.suppress(KeyError, ValueError, TypeError):
        milliseconds = float(headers["retry-after-ms"])
        if not math.isnan(milliseconds):
            return max(0.0, milliseconds / 1000.0)
    try:
        given = headers.get("retry-after")
        if given is None:
            return None
        try:
            return max(0.0, float(given))
        except ValueError:
            when = email.utils.parsedate_to_datetime(given)
            return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError, OverflowError):
        return None


class _ServerError(Exception):
    """An error the server reported after its 200 status: in a stream's event or in the body."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def about_the_request(self) -> bool:
        """A 4xx the request caused (such as a prompt longer than the context), which says
        nothing about the model's health; anything else counts against the model."""
        return self.code is not None and 400 <= self.code < 500 and self.code not in _RETRY_STATUS

    @classmethod
    def of(cls, payload: object) -> _ServerError | None:
        """The error an OpenAI-style ``{"error": {"message": ..., "code": ...}}`` object
        reports (``None`` when it reports none, or also carries ``choices``)."""
        if not isinstance(payload, dict) or not payload.get("error") or payload.get("choices"):
            return None  # {"error": null} beside an answer is no error
        error = payload["error"]
        if isinstance(error, dict):
            code = error.get("code")
            return cls(str(error.get("message") or error), code if isinstance(code, int) else None)
        return cls(str(error), None)


def _render_tool_calls(content: str, calls: Sequence[Mapping[str, Any]]) -> str:
    """Structured ``tool_calls`` of the OpenAI API as the Hermes markup the router parses."""
    blocks = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except (ValueError, RecursionError):  # not JSON, a 5,000-digit number, deep nesting
            parsed = arguments  # left as text: the router reports it as an invalid call
        body = json.dumps({"name": function.get("name"), "arguments": parsed}, ensure_ascii=False)
        blocks.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join([content, *blocks]) if content else "\n".join(blocks)


class OpenAICompatibleBackend:
    """One model on an OpenAI-compatible server (see the module docstring).

    ``base_url`` ends in ``/v1``; ``model`` is the server's model id; ``name`` is the arm's
    name in the router (default: ``model``). ``capabilities`` says what the deployment
    serves: add ``"tools"`` only for a server that parses tool calls for this model.
    ``max_concurrency`` bounds the requests ``router.generate_batch`` sends at once (the
    server batches them). ``tokenizer`` (a local copy of the model's tokenizer) makes
    :meth:`count_tokens` exact. ``energy`` is an :class:`~greenserv_core.energy.base.EnergyMeter`
    with a window around each request (e.g. an
    :class:`~greenserv_core.energy.remote.ExporterEnergyCounter`).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        name: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 600.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        context_window: int = 4096,
        capabilities: frozenset[str] = frozenset({"chat_template", "system_role"}),
        energy: EnergyMeter | None = None,
        assumed_watts: float = 300.0,
        prior_joules_per_token: float | None = None,
        prior_seconds_per_token: float | None = None,
        quality: QualityPrior | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        max_concurrency: int = 8,
        tokenizer: str | Path | None = None,
        max_tokens_field: str = "max_tokens",
        strict_json_schema: bool = False,
        max_stop_sequences: int | None = 4,
        send_sampling: bool = True,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip().lower().startswith(("http://", "https://")):
            raise InvalidInputError(f"base_url must be an http(s) URL, got {redacted(repr(base_url))}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidInputError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise InvalidInputError(
                f"max_tokens_field must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_field!r}"
            )
        timeouts = (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s))
        for label, value in (*timeouts, ("request_timeout_s", request_timeout_s)):
            check_number(label, value, low=0.0, strict=True)  # None too: no limit would let a stall hold an answer
        if max_stop_sequences is not None and (
            isinstance(max_stop_sequences, bool) or not isinstance(max_stop_sequences, int) or max_stop_sequences < 0
        ):
            raise InvalidInputError(f"max_stop_sequences must be None or an integer >= 0, got {max_stop_sequences!r}")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InvalidInputError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        assumed_watts = check_number("assumed_watts", assumed_watts, low=0.0, strict=True)
        try:
            url = httpx.URL(base_url.strip()) if isinstance(base_url, str) else None
        except httpx.InvalidURL:  # (a '/' or '#' in a password, not percent-encoded): its text not shown
            shown = f"…@{base_url.rpartition('@')[2]}" if "@" in base_url else redacted(base_url)  # (no userinfo)
            raise InvalidInputError(
                f"base_url is not a URL httpx can read ({shown!r}); percent-encode a '/', '#' or '@' in a user "
                "name or password (or give api_key=)"
            ) from None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise InvalidInputError(f"base_url must be an http(s) URL with a host, got {redacted(repr(base_url))}")
        credentials = (url.username, url.password) if url.username or url.password else None
        query = url.params  # e.g. Azure's api-version: sent with every request (a key given twice, twice)
        # the URL as shown in messages and logs: no credentials, no query; its path as written ("%2F" kept)
        self.base_url = str(url.copy_with(username=None, password=None, query=None, fragment=None)).rstrip("/")
        self.model = model
        self.max_tokens_field = max_tokens_field
        self.max_stop_sequences = max_stop_sequences
        self.strict_json_schema = bool(strict_json_schema)
        self.send_sampling = bool(send_sampling)
        self.request_timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.energy = energy
        self.assumed_watts = float(assumed_watts)
        self.max_concurrency = max_concurrency
        self.tokenizer = tokenizer
        self._tokenizer: Any = None
        self.breaker = CircuitBreaker(failure_threshold=failure_threshold, cooldown_s=cooldown_s)
        self._overlap = OverlapShares()
        self._info = ModelInfo(
            name=name or model,
            context_window=context_window,
            capabilities=capabilities,  # checked there: a bare string is refused, not taken as its letters
            prior_joules_per_token=prior_joules_per_token,
            prior_seconds_per_token=prior_seconds_per_token,
            quality=quality,
        )
        all_headers = httpx.Headers(headers or {})  # (its names read in any case, as HTTP does)
        given = [
            label
            for label, present in (
                ("api_key=", bool(api_key)),
                ("an Authorization header", "authorization" in all_headers),
                ("a user and password in base_url", credentials is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise InvalidInputError(f"give the server's credentials once, got {' and '.join(given)}")
        if not given and url.scheme == "https" and url.host == "api.openai.com":  # that host alone: never a look-alike
            api_key = os.environ.get("OPENAI_API_KEY")
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            params=query,
            auth=credentials,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max(max_concurrency, 10)),
            transport=transport,
            headers=all_headers,
        )
        self._lock = threading.Lock()
        self.attempts_ = 0  # HTTP attempts made, retries included
        self._meter_failed = False

    # ---- ModelBackend -------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info

    def _rename(self, name: str) -> None:
        """Name this model ``name``: only for a backend just built, that no router holds yet (a
        router keys what it learns by the name a model joined with;
        :func:`~greenserv_core.models.pool.build_backends` names models apart with it).
        Requests still ask the server for :attr:`model`.

        >>> backend = OpenAICompatibleBackend("http://gpu-2:8000/v1", "llama-3-8b")
        >>> backend._rename("llama-b"); backend.info.name, backend.model
        ('llama-b', 'llama-3-8b')
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"a model's name must be a non-empty string, got {name!r}")
        self._info = dataclasses.replace(self._info, name=name)

    @property
    def available(self) -> bool:
        """False while cooling down after ``failure_threshold`` consecutive failures."""
        return self.breaker.available

    @property
    def token_count_key(self) -> str:
        """Equal for servers whose prompts are counted alike: the same local tokenizer, or the
        character estimate; the router then counts a prompt once per key, not once per server."""
        return f"openai-compatible:{self.tokenizer}" if self.tokenizer is not None else "openai-compatible:chars"

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """The prompt's length in the model's tokens, through its chat template, when a local
        copy of its ``tokenizer`` (a folder or an offline hub id) was given; otherwise an
        estimate of about four characters a token, plus a few per turn. Used for
        context-window eligibility (the server's ``usage`` gives the counts of an answer)."""
        if self.tokenizer is None:
            return sum(4 + math.ceil(len(m["content"]) / _CHARS_PER_TOKEN) for m in messages)
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer))
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True)
            ids = ids["input_ids"] if isinstance(ids, Mapping) else ids
            return len(ids)
        return sum(len(tokenizer.encode(m["content"])) for m in messages)

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        if settings.max_time_s is not None:  # a time limit cuts a stream short, as local models do
            chunks = list(self.stream(messages, settings))
            result = chunks[-1].result
            assert result is not None
            return result
        window = self._start_energy()
        started = time.perf_counter()
        try:
            response = self._with_retries(lambda: self._post(self._body(messages, settings, stream=False)), window)
        except ModelUnavailableError as error:
            self._charge(error, window, started)
            raise
        except BaseException:
            window.close()
            raise
        latency = time.perf_counter() - started
        try:  # (in the charset the server declares, as a stream is read; JSON's own is UTF-8)
            data = response.json() if response.charset_encoding is None else json.loads(response.text)
            reported = _ServerError.of(data)
            if reported is not None:
                raise self._charge(self._unavailable(reported, "answered with an error"), window, started)
            choice = data["choices"][0]
            text, finish, cut = _whole_answer(choice, self._stops_kept_here(settings))
            if finish in _FAILED_FINISH:
                failed = self._unavailable(_ServerError(_failed_finish(finish), None), "failed")
                raise self._charge(failed, window, started)
            # cut at a stop kept here, the tokens' probabilities run past the answer
            logprobs = _token_logprobs(choice) if settings.logprobs and not cut else None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:  # not shaped as OpenAI's
            self.breaker.failure()
            failed = ModelUnavailableError(
                f"{self._info.name}: malformed answer from {self.base_url}: {error!r}: {response.text[:200]!r}"
            )
            raise self._charge(failed, window, started) from error
        except BaseException:
            window.close()
            raise
        self.breaker.success()
        try:
            return self._result(messages, text, data.get("usage"), response.headers, latency, window, finish, logprobs)
        finally:
            window.close()  # a no-op once the result was computed; else its ticket is not left held

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        window = self._start_energy()
        started = time.perf_counter()
        answered = False
        chunks = self._stream(messages, settings, window)
        try:
            for chunk in chunks:
                answered = chunk.result is not None
                yield chunk
        except ModelUnavailableError as error:
            self._charge(error, window, started)
            raise
        except GeneratorExit:  # closed before its answer: what the server spent so far is reported
            chunks.close()  # the request is dropped first
            if not answered:
                seconds = time.perf_counter() - started
                report_abandoned(self._window_energy(window, seconds), seconds)
            raise
        finally:
            window.close()  # a no-op once the result was computed or charged

    def _charge(self, error: ModelUnavailableError, window: _Window, started: float) -> ModelUnavailableError:
        """Put what the failed request spent on ``error`` (its share of the server's busy time,
        metered or priced at ``assumed_watts`` as a labelled estimate), closing its window."""
        seconds = time.perf_counter() - started
        energy = self._window_energy(window, seconds)
        error.spent_joules += energy.joules
        error.spent_s += seconds
        error.spent_source, error.spent_measured = energy.source, energy.measured
        return error

    def _stream(
        self, messages: Sequence[Message], settings: GenerationSettings, window: _Window
    ) -> Generator[StreamChunk, None, None]:
        started = time.perf_counter()
        body = self._body(messages, settings, stream=True)
        limit = settings.max_time_s
        deadline = None if limit is None else started + limit

        def late() -> bool:  # the answer's time limit is up
            return deadline is not None and time.perf_counter() >= deadline

        response, lines = self._with_retries(lambda: self._open_stream(body, deadline), window, deadline)
        guard = None
        if deadline is not None:  # a server that stalls past the time limit ends the answer there
            lines = iter(()) if late() else until_late(lines, deadline)  # (late: its first line came past it)
            guard = DeadlineGuard(response, deadline)
        events_read = data_joined(lines)
        pieces: list[str] = []
        usage: Mapping[str, Any] | None = None
        finish = "stop"
        tool_calls: dict[int, dict[str, Any]] = {}
        aliases: dict[int, int] = {}
        logprobs: list[float] | None = [] if settings.logprobs else None
        events = 0
        ended = False  # "[DONE]" or a finish reason came: the stream ended as streams end
        kept_here = self._stops_kept_here(settings)
        buffer = StopBuffer(kept_here) if kept_here else None
        other: list[str] = []  # lines that are no event: a server answering the stream request whole
        whole_calls: Sequence[Mapping[str, Any]] = []  # the tool calls of such an answer
        headers_after: Mapping[str, str] = {}  # headers sent once the answer was done (only such an answer's)
        try:
            for line, decoded in events_read:  # a slow caller does not cut the answer: only the server's waits do
                event = self._event(line, decoded)
                if event == "done":
                    ended = True
                    break
                if isinstance(event, _ServerError):
                    raise event
                if not isinstance(event, dict):
                    other.append(line)
                    continue
                events += 1
                given = event.get("usage")
                usage = given if isinstance(given, Mapping) and given else usage  # one that is no object is none
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    calls = delta.get("tool_calls") or []
                    for call in [calls] if isinstance(calls, Mapping) else calls:  # TGI sent one call bare
                        merge_tool_call_delta(tool_calls, call, aliases)
                    text_piece = _text_of(delta.get("content")) or _text_of(delta.get("refusal"))
                    if text_piece and buffer is not None:
                        text_piece = buffer.push(text_piece)
                    if text_piece:
                        pieces.append(text_piece)
                        yield StreamChunk(delta=text_piece)
                    if delta.get("refusal") and not delta.get("content"):
                        finish = "refusal"
                    if logprobs is not None and (delta.get("content") or choice.get("logprobs")):
                        piece = _token_logprobs(choice, chunk=True)
                        if piece is None:  # one bad chunk spoils them all
                            logprobs = None
                        else:
                            logprobs.extend(piece)
                    ended = ended or bool(choice.get("finish_reason"))
                    if finish != "refusal":  # OpenAI ends a refusal's stream with "stop"
                        finish = choice.get("finish_reason") or finish
                if buffer is not None and buffer.stopped:  # at a stop kept here: closed, as stopped
                    ended, logprobs = True, None
                    finish = finish if finish == "refusal" else "stop"
                    break
            held = buffer.flush() if buffer is not None else ""
            if held:  # the tail held back in case a stop began there
                pieces.append(held)
                yield StreamChunk(delta=held)
            if late() and not ended:  # the server's time ran out before the stream's end
                finish = "length"
            body_text = "\n".join(line for line in other if line.strip())
            if not events and finish != "length" and body_text.lstrip().startswith("{"):  # an answer or error as JSON
                data = json.loads(body_text)
                headers_after = response.headers  # sent after the generation, as generate()'s
                reported = _ServerError.of(data) if isinstance(data, dict) else None
                if reported is not None:
                    raise reported
                choice = data["choices"][0]
                text_piece, finish, cut = _whole_answer(choice, kept_here, with_calls=False)
                whole_calls = (choice.get("message") or {}).get("tool_calls") or []  # in the answer, not its text
                given = data.get("usage")
                usage = given if isinstance(given, Mapping) and given else usage
                whole = _token_logprobs(choice) if logprobs is not None and not cut else None  # as generate() reads
                logprobs, ended = None if whole is None else list(whole), True
                if text_piece:
                    pieces.append(text_piece)
                    yield StreamChunk(delta=text_piece)
            if finish in _FAILED_FINISH:
                raise _ServerError(_failed_finish(finish), None)
            if not ended and finish != "length":  # cut off, or not an answer at all (a proxy's page)
                what = f"ended after {events} events without its end" if events else "held no answer"
                raise ValueError(f"the stream {what}: {body_text[:200]!r}")
        except _ServerError as error:
            raise self._unavailable(error, f"reported an error after {len(''.join(pieces))} characters") from error
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:  # not shaped as OpenAI's
            self.breaker.failure()
            raise ModelUnavailableError(
                f"{self._info.name}: malformed stream from {self.base_url} after {len(''.join(pieces))} "
                f"characters: {error!r}"
            ) from error
        except httpx.HTTPError as error:
            self.breaker.failure()
            raise ModelUnavailableError(
                f"{self._info.name}: the stream from {self.base_url} broke after {len(''.join(pieces))} characters: "
                f"{error!r}"
            ) from error
        except GeneratorExit:  # the caller stopped reading a stream that was answering well
            if events:
                self.breaker.success()
            raise
        finally:
            if guard is not None:
                guard.cancel()  # before the connection can go back to the pool
            response.close()
        self.breaker.success()
        text = "".join(pieces)
        if tool_calls or whole_calls:
            text = _render_tool_calls(text, joined_tool_calls(tool_calls) if tool_calls else whole_calls)
        latency = time.perf_counter() - started
        kept = tuple(logprobs) if logprobs else None
        yield StreamChunk(
            # a stream's headers came before its generation: no energy header of theirs measured it
            delta="",
            result=self._result(messages, text, usage, headers_after, latency, window, finish, kept),
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    # ---- requests ------------------------------------------------------------------------
    def _stops_kept_here(self, settings: GenerationSettings) -> tuple[str, ...]:
        """The stop sequences past ``max_stop_sequences``: this backend ends the answer at them."""
        return () if self.max_stop_sequences is None else settings.stop[self.max_stop_sequences :]

    def _body(self, messages: Sequence[Message], settings: GenerationSettings, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _openai_messages(messages)
            if "tools" in self._info.capabilities
            else [dict(m) for m in tool_turns_as_user(messages)],  # a server without tools takes no tool turn
            self.max_tokens_field: settings.max_new_tokens,
            "stream": stream,
        }
        if self.send_sampling:
            body["temperature"] = settings.temperature
            # 1 is every server's default, and TGI refuses it (422): left out, as OpenAI's client does
            if settings.top_p < 1.0:
                body["top_p"] = settings.top_p
        sent = list(settings.stop[: self.max_stop_sequences])
        if sent:
            body["stop"] = sent
        if settings.seed is not None:
            body["seed"] = settings.seed
        if settings.tools:
            body["tools"] = [tool.to_openai() for tool in settings.tools]
        if settings.json is not None:
            schema = settings.json.schema
            if schema is None:
                body["response_format"] = {"type": "json_object"}
                if not any("json" in str(m.get("content") or "").lower() for m in body["messages"]):
                    # OpenAI refuses JSON mode unless the conversation asks for JSON in words
                    body["messages"] = _asking_for_json(body["messages"], "system_role" in self._info.capabilities)
            else:
                described: dict[str, Any] = {"name": settings.json.name or "answer", "schema": schema}
                if self.strict_json_schema or settings.json.strict:
                    described["strict"] = True
                body["response_format"] = {"type": "json_schema", "json_schema": described}
        if settings.logprobs:
            body["logprobs"] = True
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self._client.post("/chat/completions", json=body, timeout=self.request_timeout)
        except httpx.ReadTimeout as error:  # sent, and maybe still being generated: not asked again
            self.breaker.failure()
            raise ModelUnavailableError(
                f"{self._info.name}: no answer from {self.base_url} within request_timeout_s "
                f"({self.request_timeout.read} s); raise it for long answers, or stream them"
            ) from error
        if response.status_code == 504:  # a gateway timed out: the server behind it may still be generating
            self.breaker.failure()
            raise ModelUnavailableError(
                f"{self._info.name}: a gateway before {self.base_url} timed out (HTTP 504) and the answer is not "
                "asked again (the server may still be generating it): raise the gateway's timeout, or stream"
            )
        self._check(response)
        return response

    def _open_stream(self, body: dict[str, Any], deadline: float | None = None) -> tuple[httpx.Response, Iterator[str]]:
        """The stream's response and its lines, the first already read; with a ``deadline`` (a
        ``time.perf_counter()`` value: the answer's time limit), no connect, write, pool or read
        wait passes it (a stalled server cannot hold the answer for the whole timeout), and
        nothing by then cuts the answer there; a read that times out before it is a failure."""
        timeout = self._client.timeout
        if deadline is not None:
            left = max(1e-3, deadline - time.perf_counter())

            def bounded(given: float | None) -> float:
                return left if given is None else min(given, left)

            timeout = httpx.Timeout(
                connect=bounded(timeout.connect),
                read=bounded(timeout.read),
                write=bounded(timeout.write),
                pool=bounded(timeout.pool),
            )
        request = self._client.build_request("POST", "/chat/completions", json=body, timeout=timeout)
        response = self._client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
            self._check(response)
            lines = event_lines(response.iter_text())
            try:
                first = next(lines, None)  # retried until the first line arrives
            except httpx.ReadTimeout:
                if deadline is None or time.perf_counter() < deadline:
                    raise  # the server stalled: a failure, not an empty answer
                return response, iter(())  # nothing within the time limit: cut there, as "length"
        except BaseException:
            response.close()
            raise
        return response, prepend(first, lines)

    def _check(self, response: httpx.Response) -> None:
        if response.status_code in _RETRY_STATUS or response.status_code >= 500:  # 507, a proxy's 52x, 529
            raise _Transient(f"HTTP {response.status_code}: {response.text[:200]}", _retry_after(response.headers))
        if response.status_code in _SETUP_STATUS:
            self.breaker.failure()  # it will not answer until its setup is mended: let it cool down
            raise ModelUnavailableError(
                f"{self._info.name}: {self.base_url} answered HTTP {response.status_code} (check the API key, "
                f"the base URL and the model id {self.model!r}): {response.text[:300]}"
            )
        if response.status_code in _CONTEXT_STATUS and any(word in response.text.lower() for word in _CONTEXT_WORDS):
            raise ModelUnavailableError(  # another model, with a longer context, may take it
                f"{self._info.name}: the prompt is too long for the server's context: {response.text[:300]}"
            )
        if 300 <= response.status_code < 400:  # not followed: a 301 or 302 would turn the POST into a GET
            self.breaker.failure()
            raise ModelUnavailableError(
                f"{self._info.name}: {self.base_url} redirects (HTTP {response.status_code}) to "
                f"{redacted(response.headers.get('location', '?'))}: give that as the base URL"
            )
        if response.status_code >= 400:
            raise InvalidInputError(
                f"{self._info.name}: {self.base_url} refused the request with HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )

    def _with_retries(self, attempt: Callable[[], _T], window: _Window, deadline: float | None = None) -> _T:
        """``attempt``, retried on transient failures with backoff (or the server's
        ``Retry-After``, up to a minute), the request's ``window`` paused while it waits; never
        waiting past ``deadline`` (a ``time.perf_counter()`` value: an answer with a time
        limit), where it stops retrying."""
        if not self.breaker.claim():  # half-open: one request tries the server, the others wait
            raise ModelUnavailableError(
                f"{self._info.name} is cooling down after repeated failures ({self.breaker.seconds_left():.1f} s left)"
            )

        def once() -> _T:
            with self._lock:
                self.attempts_ += 1
            try:
                return attempt()
            except httpx.TransportError as error:  # connect errors, timeouts, broken connections
                self.breaker.failure()
                raise _Transient(repr(error)) from error
            except httpx.DecodingError as error:  # a garbled compressed body: not asked again, the server did the work
                self.breaker.failure()
                raise ModelUnavailableError(
                    f"{self._info.name}: {self.base_url} sent a body that cannot be decoded: {error!r}"
                ) from error
            except _Transient:
                self.breaker.failure()
                raise

        backoff = wait_exponential_jitter(initial=self.backoff_s, max=self.max_backoff_s)

        def wait(state: RetryCallState) -> float:  # the server's Retry-After where it said one, up to a minute
            waited = float(backoff(state))
            error = state.outcome.exception() if state.outcome is not None else None
            asked = getattr(error, "retry_after", None)
            if asked is not None and asked <= _LONGEST_RETRY_AFTER_S:
                waited = max(waited, asked)
            retry_left = state.attempt_number <= self.max_retries  # (tenacity asks for the wait before its stop)
            if retry_left and deadline is not None and waited >= deadline - time.perf_counter():
                raise ModelUnavailableError(  # a retry then would answer past the time limit, to be thrown away
                    f"{self._info.name}: {self.base_url} did not answer within the time limit "
                    f"({state.attempt_number} attempt(s); the last: {error})"
                ) from error
            return waited

        def worth_retrying(error: BaseException) -> bool:  # not once the circuit opened, nor past the deadline
            in_time = deadline is None or time.perf_counter() < deadline
            return isinstance(error, _Transient) and self.breaker.available and in_time

        def nap(seconds: float) -> None:  # the server does no work for the request meanwhile
            window.pause()
            try:
                time.sleep(seconds)
            finally:
                window.resume()

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            sleep=nap,
            retry=retry_if_exception(worth_retrying),
            reraise=True,
        )
        try:
            result = retrying(once)
        except _Transient as error:
            raise ModelUnavailableError(
                f"{self._info.name}: {self.base_url} failed after "
                f"{retrying.statistics.get('attempt_number', 1)} attempt(s): {error}"
            ) from error
        return result  # the breaker counts a success once the whole answer is read (generate, _stream)

    def _unavailable(self, error: _ServerError, what: str) -> ModelUnavailableError:
        """The error to raise for one the server reported (it counts against the model unless
        the request caused it)."""
        if not error.about_the_request:
            self.breaker.failure()
        code = "" if error.code is None else f" ({error.code})"
        return ModelUnavailableError(f"{self._info.name}: {self.base_url} {what}{code}: {error}")

    @staticmethod
    def _event(line: str, decoded: dict[str, Any] | None = None) -> dict[str, Any] | str | _ServerError | None:
        """One server-sent event line: its JSON, ``"done"``, the error it reports (vLLM's
        ``data: {"error": ...}``, llama.cpp's ``error: {...}``), or ``None`` for anything else.
        ``decoded`` is a ``data:`` line's JSON object where :func:`data_joined` decoded it
        already (it is not decoded again)."""
        field, _, payload = line.partition(":")
        if field not in ("data", "error"):
            return None
        payload = payload.strip()
        if field == "data" and payload == "[DONE]":
            return "done"
        try:
            event = decoded if decoded is not None and field == "data" else json.loads(payload)
        except json.JSONDecodeError:
            return _ServerError(payload or "an error event", None) if field == "error" else None
        if field == "error":
            return _ServerError.of({"error": event}) or _ServerError(payload, None)
        reported = _ServerError.of(event)
        if reported is not None:
            return reported
        return event if isinstance(event, dict) else None

    # ---- results -------------------------------------------------------------------------
    def _start_energy(self) -> _Window:
        window = _Window(self._overlap)
        if self.energy is not None:
            try:
                window.open(self.energy)
            except Exception as error:
                self._meter_trouble(error)
        return window

    def _meter_trouble(self, error: Exception) -> None:
        with self._lock:
            first, self._meter_failed = not self._meter_failed, True
        if first:
            logger.warning(
                "%s: energy meter %s failed (%s: %s); such requests get the labelled estimate",
                self._info.name,
                getattr(self.energy, "source", "?"),
                type(error).__name__,
                error,
            )

    def _result(
        self,
        messages: Sequence[Message],
        text: str,
        usage: object,
        headers: Mapping[str, str],
        latency: float,
        window: _Window,
        finish: str,
        token_logprobs: tuple[float, ...] | None = None,
    ) -> GenerationResult:
        usage = usage if isinstance(usage, Mapping) else {}  # a usage that is no object is none
        input_tokens = _token_count(usage.get("prompt_tokens"))
        output_tokens = _token_count(usage.get("completion_tokens"))
        if input_tokens is None:
            input_tokens = self.count_tokens(messages)
        if output_tokens is None:
            output_tokens = math.ceil(len(text) / _CHARS_PER_TOKEN)
        metered = self._window_energy(window, latency)  # closes the window either way
        reported = reported_energy(usage, headers)
        energy = metered if reported is None else self._with_earlier_attempts(reported, window)
        return GenerationResult(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_s=latency,
            energy=energy,
            finish_reason=finish if finish in _FINISH_REASONS else "stop",
            token_logprobs=token_logprobs,
        )

    def _window_energy(self, window: _Window, seconds: float) -> EnergyReading:
        """Close a request's window: its share of the server's busy time (``seconds`` long in
        all), as the meter counted it, else priced at ``assumed_watts`` as a labelled estimate."""
        charged, counted = window.close()
        if window.error is not None:
            self._meter_trouble(window.error)
        # a reading covers the whole window, the meter's own reads included: the request's share of it is its
        # charged part of the seconds the window was open (its latency leaves out the first read; neither counts
        # the waits before a retry)
        return self._priced(charged, window.active_s if counted is not None else min(seconds, window.active_s), counted)

    def _with_earlier_attempts(self, reported: EnergyReading, window: _Window) -> EnergyReading:
        """The joules the server ``reported`` for the attempt that answered, with what the
        request's earlier attempts (which it did not report) spent, metered or estimated."""
        earlier = window.earlier()
        if earlier is None:
            return reported
        charged, seconds, counted = earlier
        return combined_energy([self._priced(charged, seconds, counted), reported])

    def _priced(self, charged: float, seconds: float, counted: EnergyReading | None) -> EnergyReading:
        """The joules of a request's share (``charged`` seconds) of the server's busy time over
        ``seconds``: the meter's reading scaled to it, else priced at ``assumed_watts``."""
        share = min(charged, seconds)  # this request's part of the busy time
        if counted is None:
            return estimated_energy(share, self.assumed_watts)
        part = share / seconds if seconds > 0 else 1.0
        return EnergyReading(counted.joules * part, source=counted.source, measured=counted.measured)


def _token_count(value: object) -> int | None:
    """A token count of the server's ``usage``: an integer >= 0, else ``None`` (estimated here).

    >>> _token_count(12), _token_count(-5), _token_count(True), _token_count("12")
    (12, None, None, None)
    """
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation in the shape of OpenAI's API for a server that takes tools: an
    assistant turn's Hermes calls become its ``tool_calls`` (ids made here, one per call),
    and each ``tool`` turn that follows answers the next of them by ``tool_call_id`` (the
    adapters put the results in the calls' order), with the result unwrapped; a ``tool`` turn
    with no call left to answer becomes a user turn. OpenAI refuses a ``tool`` turn without one, and vLLM's templates
    render the calls in their own model's format.

    >>> from greenserv_core.tools import tool_result_turn, with_tool_calls
    >>> turns = _openai_messages([{"role": "assistant", "content": with_tool_calls("", [("add", {"a": 2})])},
    ...                           {"role": "tool", "content": tool_result_turn("2")}])
    >>> turns[0]["tool_calls"][0]["id"] == turns[1]["tool_call_id"], turns[1]["content"]
    (True, '2')
    """
    out: list[dict[str, Any]] = []
    waiting: list[str] = []
    for turn, message in enumerate(messages):
        if message["role"] == "assistant" and "<tool_call>" in message["content"]:
            prose, calls = split_tool_calls(message["content"])
            if calls:
                ids = [f"call_{turn}_{k}" for k in range(len(calls))]
                out.append(
                    {
                        "role": "assistant",
                        "content": prose or None,
                        "tool_calls": [
                            {"id": i, "type": "function", "function": {"name": name, "arguments": arguments}}
                            for i, (name, arguments) in zip(ids, calls, strict=True)
                        ],
                    }
                )
                waiting = ids
                continue
        if message["role"] == "tool":
            result = tool_result_text(message["content"])
            if waiting:
                out.append({"role": "tool", "tool_call_id": waiting.pop(0), "content": result})
            else:  # no call left to answer (say, its turn was trimmed away): OpenAI refuses a tool turn then
                out.append({"role": "user", "content": f"Tool result:\n{result}"})
            continue
        out.append(dict(message))
    return out


def _token_logprobs(choice: Mapping[str, Any], *, chunk: bool = False) -> tuple[float, ...] | None:
    """The tokens' log-probabilities of an OpenAI choice (``logprobs.content[].logprob``), or
    ``None`` where the server gave none (not every OpenAI-compatible server does). A stream's
    ``chunk`` may hold no tokens (OpenAI's first chunk has ``"content": []``; a last chunk with no
    text may have ``"content": null``): then ``()``.

    >>> _token_logprobs({"delta": {}, "logprobs": {"content": None}}, chunk=True)
    ()
    """
    content = (choice.get("logprobs") or {}).get("content")
    if content is None and chunk and not (choice.get("delta") or {}).get("content"):
        return ()  # (no text, no tokens)
    if not isinstance(content, list):
        return None
    try:
        values = tuple(float(item["logprob"]) for item in content)
    except (KeyError, TypeError, ValueError):
        return None  # a confidence signal is optional: a malformed one is none, not a failed answer
    return values if (values or chunk) and all(math.isfinite(v) and v <= 0 for v in values) else None


class _Window:
    """A request's ticket in the overlap shares and its energy meter's open window, paused
    while the request waits to retry (a server that refused it did no work for it then)."""

    def __init__(self, overlap: OverlapShares) -> None:
        self.overlap = overlap
        self.ticket: int | None = overlap.enter()
        self.closed = False
        self._since = time.perf_counter()
        self._meter_source: EnergyMeter | None = None
        self._meter: AbstractContextManager[EnergyWindow] | None = None
        self._window: EnergyWindow | None = None
        self._attempts: list[tuple[float, float, EnergyReading | None]] = []
        """Each attempt's seconds charged, seconds open and meter reading (``None``: none)."""
        self.error: Exception | None = None

    @property
    def active_s(self) -> float:
        """The seconds it was open, not paused, up to its last pause: the request's time at the server."""
        return sum(active for _, active, _ in self._attempts)

    def open(self, meter: EnergyMeter) -> None:
        context = meter.measure()
        self._window = context.__enter__()
        self._meter, self._meter_source = context, meter

    def pause(self, *, ending: bool = False) -> None:
        """Leave the overlap shares and close the meter's window until :meth:`resume` (for
        good when ``ending``: a window with no reading is then no reading, not 0 J)."""
        if self.closed or self.ticket is None:
            return
        active = time.perf_counter() - self._since  # read inside its time in the shares: alone, charged >= active
        charged = self.overlap.leave(self.ticket)
        self.ticket = None
        self._attempts.append((charged, active, self._close_meter(pausing=not ending)))

    def resume(self) -> None:
        if self.closed or self.ticket is not None:
            return
        self.ticket, self._since = self.overlap.enter(), time.perf_counter()
        if self._meter_source is not None and self.error is None:
            try:
                self.open(self._meter_source)
            except Exception as error:
                self.error = error

    def _close_meter(self, *, pausing: bool = False) -> EnergyReading | None:
        meter, self._meter = self._meter, None
        if meter is None or self._window is None:
            return None
        try:
            meter.__exit__(None, None, None)
        except Exception as error:
            if pausing and isinstance(error, CounterDidNotMoveError):  # a refused attempt, over before
                # the counter moved: nothing spent that it could see (one that went back: unknown)
                return EnergyReading(0.0, self._window.source, self._window.measured)
            self.error = error
            return None
        return self._window.reading()

    def close(self) -> tuple[float, EnergyReading | None]:
        """Leave the overlap shares and close the meter's window (the first call does it):
        the seconds charged to the request and the meter's reading (``None`` without one, or
        where a read failed)."""
        if self.closed:
            return 0.0, None
        self.pause(ending=True)
        self.closed = True
        charged = sum(seconds for seconds, _, _ in self._attempts)
        readings = [reading for _, _, reading in self._attempts if reading is not None]
        if self.error is not None or not readings:
            return charged, None
        return charged, combined_energy(readings)

    def earlier(self) -> tuple[float, float, EnergyReading | None] | None:
        """The attempts before the last, once closed: their seconds charged, seconds open and
        the meter's reading of them (``None`` where it has none for one of them); ``None``
        for a request answered at its first attempt."""
        if len(self._attempts) < 2:
            return None
        earlier = self._attempts[:-1]
        readings = [reading for _, _, reading in earlier]
        counted = None if None in readings else combined_energy([r for r in readings if r is not None])
        return math.fsum(c for c, _, _ in earlier), math.fsum(a for _, a, _ in earlier), counted


def _whole_answer(
    choice: Mapping[str, Any], stops: Sequence[str] = (), *, with_calls: bool = True
) -> tuple[str, str, bool]:
    """The text (tool calls rendered as Hermes blocks unless ``with_calls`` is false, a refusal
    as its text), the finish reason of one choice of a whole, non-streamed answer, and whether
    the text was cut at one of ``stops`` (the stop sequences kept here; the tool calls' blocks
    are never cut).

    >>> _whole_answer({"message": {"content": "4"}, "finish_reason": "stop"})
    ('4', 'stop', False)
    >>> _whole_answer({"message": {"content": None, "refusal": "No. Sorry."}}, stops=[" "])
    ('No.', 'refusal', True)
    """
    message = choice.get("message") or {}
    text = _text_of(message.get("content"))
    finish = choice.get("finish_reason") or "stop"
    if not text and message.get("refusal"):
        text, finish = _text_of(message["refusal"]), "refusal"
    text, cut = truncate_at_stop(text, stops)
    if cut and finish != "refusal":
        finish = "stop"
    if with_calls and message.get("tool_calls"):
        text = _render_tool_calls(text, message["tool_calls"])
    return text, finish, cut


def _failed_finish(finish: str) -> str:
    return f"the generation ended with finish_reason {finish!r}: the server gave it up, so it is no answer"


def _text_of(content: object) -> str:
    """A message's or delta's ``content`` as text: a string, or the text parts of a list of
    content parts (as Mistral's API sends; other parts, such as its thinking, left out);
    ``None`` is no text. Anything else is not OpenAI's shape: :class:`TypeError`.

    >>> _text_of([{"type": "thinking", "thinking": []}, {"type": "text", "text": "4"}]), _text_of(None)
    ('4', '')
    """
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, Mapping) for part in content):
        texts = [part.get("text") for part in content if part.get("type") == "text"]
        if all(isinstance(text, str) for text in texts):
            return "".join(texts)
    raise TypeError(f"content is neither text nor a list of text parts: {content!r:.100}")


def _asking_for_json(messages: list[dict[str, Any]], system_role: bool) -> list[dict[str, Any]]:
    r"""The conversation with "Answer in JSON." in its one leading system turn (added to it, or
    a new one), or at the start of the first user turn for a model declared without
    ``system_role``: templates that take one system turn only (Gemma-3, Mistral) refuse two.

    >>> _asking_for_json([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], True)[0]
    {'role': 'system', 'content': 'Be brief.\n\nAnswer in JSON.'}
    >>> _asking_for_json([{"role": "user", "content": "Hi"}], False)
    [{'role': 'user', 'content': 'Answer in JSON.\n\nHi'}]
    """
    ask = "Answer in JSON."
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0].get('content') or ''}\n\n{ask}".lstrip()}, *messages[1:]]
    if system_role:
        return [{"role": "system", "content": ask}, *messages]
    for position, message in enumerate(messages):
        if message["role"] == "user":
            changed = {**message, "content": f"{ask}\n\n{message.get('content') or ''}"}
            return [*messages[:position], changed, *messages[position + 1 :]]
    return [{"role": "user", "content": ask}, *messages]


@register_address_scheme("remote", ("http://", "https://"), describes="a remote <base URL>#<model id>", priority=10)
def remote_backend(address: str, meter: str = "auto", *, name: str | None = None) -> OpenAICompatibleBackend:
    """A model on an OpenAI-compatible server, written ``<base URL>#<model id>`` (the server
    reports or estimates its energy, so ``meter`` is not used), named ``name`` (by default
    its model id).

    >>> remote_backend("http://gpu-1:8000/v1#Qwen/Qwen2.5-7B-Instruct").info.name
    'Qwen/Qwen2.5-7B-Instruct'
    """
    base_url, hashed, model = address.rpartition("#")  # (a model id holds no '#'; a password may)
    if not hashed or not model:
        raise InvalidInputError(
            f"a remote model is <base URL>#<model id>, e.g. http://gpu-1:8000/v1#qwen, got {redacted(repr(address))}"
        )
    return OpenAICompatibleBackend(base_url, model, name=name)


def server_named(backend: OpenAICompatibleBackend) -> str:
    """``backend``'s model id and server, ``<model id>@<host[:port]>`` (and the base URL's path,
    without a final ``/v1``): the name of a model id that several servers of one pool serve.

    >>> server_named(remote_backend("http://user:key@gpu-2:8000/v1/#llama-3-8b"))
    'llama-3-8b@gpu-2:8000'
    >>> server_named(remote_backend("https://gateway/llama-b/v1#llama-3-8b"))
    'llama-3-8b@gateway/llama-b'
    """
    url = httpx.URL(backend.base_url)  # (without credentials or query)
    return f"{backend.model}@{url.netloc.decode('ascii')}{url.path.rstrip('/').removesuffix('/v1')}"

"""The transformers backend on tiny random-weight models (real tokenizer, real generate)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from greenserv_core import (
    GenerationSettings,
    GreenServRouter,
    InvalidInputError,
    MissingResourceError,
    NoEligibleModelError,
)
from greenserv_core.backends.abandoned import collecting_abandoned
from greenserv_core.backends.memory import ModelMemory
from greenserv_core.backends.prompt_format import StopBuffer, truncate_at_stop
from greenserv_core.backends.transformers import TransformersBackend
from greenserv_core.energy import CpuTimeEstimateMeter
from greenserv_core.models import ModelSpec
from greenserv_core.tools import ToolSpec
from tests.conftest import make_hashing_extractor
from tests.timing import assert_linear_time
from tests.tiny_models import build_scripted_model, build_tiny_model

ASK = [{"role": "user", "content": "what is the capital of france?"}]


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-plain"))


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat"), chat_template=True, seed=1)


def backend_for(path: Path, name: str = "tiny", **kwargs) -> TransformersBackend:  # type: ignore[no-untyped-def]
    kwargs.setdefault("meter", CpuTimeEstimateMeter())
    kwargs.setdefault("memory", ModelMemory())
    return TransformersBackend(ModelSpec(name, path=str(path)), device="cpu", **kwargs)


def test_loads_lazily_and_reads_the_context_window(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    assert backend.info.context_window == 256
    assert not backend.is_loaded
    backend.generate(ASK, GenerationSettings(max_new_tokens=4))
    assert backend.is_loaded and backend.load_seconds is not None


def test_plain_format_without_chat_template(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    assert not backend.uses_chat_template
    assert backend.render(ASK) == "User: what is the capital of france?\nAssistant:"
    assert "chat_template" not in backend.info.capabilities


def test_chat_template_when_present(chat_dir: Path) -> None:
    backend = backend_for(chat_dir)
    assert backend.uses_chat_template and "chat_template" in backend.info.capabilities
    assert backend.render(ASK) == "[user] what is the capital of france?\n[assistant]"


def test_exact_token_counts_and_labelled_energy(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    result = backend.generate(ASK, GenerationSettings(max_new_tokens=12))
    assert result.input_tokens == backend.count_tokens(ASK) == len(backend.tokenizer(backend.render(ASK))["input_ids"])
    assert 1 <= result.output_tokens <= 12
    assert result.energy.source == "cpu-time-estimate" and result.energy.measured is False
    assert result.finish_reason in {"stop", "length"}


@pytest.mark.parametrize("fixture", ["plain_dir", "chat_dir"])
def test_the_fast_count_agrees_with_the_encoded_prompt(fixture: str, request: pytest.FixtureRequest) -> None:
    """count_tokens reads the fast tokenizer's encoder directly; its count is the encoded
    prompt's, and a tokenizer set to truncate or to pad to a fixed length is counted as
    encoded, never cut short to the truncation length."""
    backend = backend_for(request.getfixturevalue(fixture))
    texts = ["a", "what is the capital of france?", "é\u2028x\n\n" * 7, "word " * 300]
    for text in texts:
        messages = [{"role": "user", "content": text}]
        assert backend.count_tokens(messages) == len(backend._encode([backend.render(messages)])["input_ids"][0])
    long = [{"role": "user", "content": "word " * 300}]
    full = backend.count_tokens(long)
    encoder = backend.tokenizer.backend_tokenizer
    encoder.enable_truncation(max_length=5)
    try:
        assert backend.count_tokens(long) == full > 5
    finally:
        encoder.no_truncation()
    for padding in ({"length": full + 50}, {"pad_to_multiple_of": 64}):
        encoder.enable_padding(**padding)
        try:
            assert backend.count_tokens(long) == full and backend.count_tokens(ASK) < 64
        finally:
            encoder.no_padding()


def test_greedy_is_deterministic_and_sampling_follows_the_seed(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    greedy = GenerationSettings(max_new_tokens=10)
    assert backend.generate(ASK, greedy).text == backend.generate(ASK, greedy).text
    sampled = GenerationSettings(max_new_tokens=10, temperature=1.0, seed=7)
    assert backend.generate(ASK, sampled).text == backend.generate(ASK, sampled).text
    texts = {
        backend.generate(ASK, GenerationSettings(max_new_tokens=10, temperature=1.5, seed=s)).text for s in range(6)
    }
    assert len(texts) > 1


def test_multi_token_stop_string_cuts_the_text(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    full = backend.generate(ASK, GenerationSettings(max_new_tokens=24)).text
    words = full.split()
    assert len(words) >= 4, full
    stop = " ".join(words[2:4])  # two words: more than one token
    cut = backend.generate(ASK, GenerationSettings(max_new_tokens=24, stop=(stop,)))
    assert stop not in cut.text
    assert full.startswith(cut.text.rstrip())
    assert cut.finish_reason == "stop"


def test_stream_matches_generate(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    settings = GenerationSettings(max_new_tokens=16)
    whole = backend.generate(ASK, settings)
    chunks = list(backend.stream(ASK, settings))
    final = chunks[-1].result
    assert final is not None
    assert "".join(c.delta for c in chunks[:-1]) == final.text == whole.text
    assert (final.input_tokens, final.output_tokens) == (whole.input_tokens, whole.output_tokens)
    assert final.energy.source == whole.energy.source


def test_abandoned_stream_releases_the_device(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    stream = backend.stream(ASK, GenerationSettings(max_new_tokens=30))
    next(stream)
    with collecting_abandoned() as spent:
        stream.close()
    assert backend.generate(ASK, GenerationSettings(max_new_tokens=3)).output_tokens >= 1  # lock was released
    assert len(spent) == 1 and spent[0].seconds > 0  # what it ran until closed is reported
    assert spent[0].energy.source == backend.generate(ASK, GenerationSettings(max_new_tokens=1)).energy.source


def test_batch_attributes_joules_by_token_share(plain_dir: Path) -> None:
    from greenserv_core.backends.base import batch_generator, concurrency_of

    backend = backend_for(plain_dir)
    assert batch_generator(backend) is backend and concurrency_of(backend) == 1
    batch = [ASK, [{"role": "user", "content": "name three colours of the rainbow please, in order"}]]
    results = backend.generate_batch(batch, GenerationSettings(max_new_tokens=8))
    assert [r.input_tokens for r in results] == [backend.count_tokens(m) for m in batch]
    tokens = [r.input_tokens + r.output_tokens for r in results]
    joules = [r.energy.joules for r in results]
    if sum(joules) > 0:
        assert joules[0] / sum(joules) == pytest.approx(tokens[0] / sum(tokens))
    assert results[0].latency_s == results[1].latency_s


def test_memory_budget_unloads_the_least_recently_used(plain_dir: Path, chat_dir: Path) -> None:
    first = backend_for(plain_dir, "first")
    first.load()
    size = first.memory.used_bytes
    memory = ModelMemory(budget_bytes=int(size * 1.5))
    a, b = backend_for(plain_dir, "a", memory=memory), backend_for(chat_dir, "b", memory=memory)
    a.generate(ASK, GenerationSettings(max_new_tokens=2))
    b.generate(ASK, GenerationSettings(max_new_tokens=2))
    assert b.is_loaded and not a.is_loaded
    a.generate(ASK, GenerationSettings(max_new_tokens=2))  # reloads on demand
    assert a.is_loaded and not b.is_loaded


def test_missing_model_names_the_fix(tmp_path: Path) -> None:
    backend = TransformersBackend(
        ModelSpec("ghost", path=str(tmp_path / "none"), install_hint="run `greenserv setup`"),
        device="cpu",
        meter=CpuTimeEstimateMeter(),
    )
    with pytest.raises(MissingResourceError, match="greenserv setup"):
        backend.generate(ASK, GenerationSettings(max_new_tokens=2))


def test_bad_messages_are_refused(chat_dir: Path) -> None:
    backend = backend_for(chat_dir)
    with pytest.raises(InvalidInputError):
        backend.render([])


def test_router_over_two_local_backends(plain_dir: Path, chat_dir: Path) -> None:
    router = GreenServRouter(
        [backend_for(plain_dir, "plain"), backend_for(chat_dir, "chat")], features=make_hashing_extractor(), seed=0
    )
    answer = router.generate("what is two plus two?", max_new_tokens=6)
    assert answer.model in {"plain", "chat"} and answer.output_tokens >= 1
    assert answer.energy_source == "cpu-time-estimate" and not answer.energy_measured
    batch = router.generate_batch(["hello there", "what is two plus two?", "who wrote hamlet?"], max_new_tokens=4)
    assert len(batch) == 3 and all(r.output_tokens >= 1 for r in batch)
    assert len({r.decision_id for r in batch}) == 3
    chunks = list(router.stream("hello again", max_new_tokens=5))
    assert chunks[-1].generation is not None


def test_concurrent_generate_calls_are_coalesced_into_batches(plain_dir: Path) -> None:
    import threading

    backend = backend_for(plain_dir)
    settings = GenerationSettings(max_new_tokens=6)
    prompts = [[{"role": "user", "content": f"question number {i} about colours"}] for i in range(8)]
    alone = [backend.count_tokens(p) for p in prompts]
    results: dict[int, object] = {}
    start = threading.Barrier(len(prompts))

    def call(i: int) -> None:
        start.wait()
        results[i] = backend.generate(prompts[i], settings)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i].input_tokens for i in range(len(prompts))] == alone  # type: ignore[attr-defined]
    assert 1 <= backend.coalesced_batches < len(prompts)


TOOLS_TEMPLATE = (
    "{% if tools %}[tools] {% for t in tools %}{{ t['function']['name'] }} {% endfor %}\n{% endif %}"
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_tools_go_through_a_template_that_takes_them_else_into_the_system_prompt(chat_dir: Path) -> None:
    weather = ToolSpec("get_weather", "Weather in a city.", '{"type": "object", "properties": {}}')
    backend = backend_for(chat_dir)
    assert not backend.template_takes_tools and "tools" not in backend.info.capabilities
    prompted = backend.render([{"role": "system", "content": "Be brief."}, *ASK], [weather])
    assert prompted.startswith("[system] Be brief.\n\nYou may call one or more functions")
    assert '"name": "get_weather"' in prompted and prompted.endswith("[assistant]")
    assert backend.render(ASK, ()) == backend.render(ASK)  # no tools, no change

    native = backend_for(chat_dir, name="native")
    native.tokenizer.chat_template = TOOLS_TEMPLATE
    assert native.template_takes_tools and "tools" in native.info.capabilities
    assert native.render(ASK, [weather]) == "[tools] get_weather [user] what is the capital of france?\n[assistant]"
    result = native.generate(ASK, GenerationSettings(max_new_tokens=3, tools=(weather,)))
    assert result.input_tokens > native.count_tokens(ASK)  # the tools were in the prompt


NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_a_template_without_a_system_role_gets_the_system_text_in_the_first_user_turn(
    chat_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    normal = backend_for(chat_dir)
    with caplog.at_level(logging.WARNING, logger="greenserv"):
        assert normal.template_takes_system and "system_role" in normal.info.capabilities
    assert not caplog.records
    strict = backend_for(chat_dir, name="strict")
    strict.tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    with caplog.at_level(logging.WARNING, logger="greenserv"):
        assert not strict.template_takes_system and "system_role" not in strict.info.capabilities
        messages = [{"role": "system", "content": "Be brief."}, *ASK]
        assert strict.render(messages) == "[user] Be brief.\n\nwhat is the capital of france?\n[assistant]"
        assert strict.generate(messages, GenerationSettings(max_new_tokens=2)).output_tokens >= 1
    # the failed probe says what happened, once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "strict" in warnings[0] and "System role not supported" in warnings[0]


def test_loading_shows_no_progress_bars(plain_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    backend_for(plain_dir).load()
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled() == before


# A base model goes on with invented turns; the scripted model answers " Rome." and then
# "\nQ: Rome.\nQ: ..." for ever (its greedy cycle after the prompt's last ":").
@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_scripted_model(tmp_path_factory.mktemp("scripted"), ": Rome.\nQ")


def test_a_base_model_stops_at_the_next_turn_marker(scripted_dir: Path) -> None:
    backend = backend_for(scripted_dir)
    assert not backend.uses_chat_template and backend.stops_at_turn_markers
    settings = GenerationSettings(max_new_tokens=40)
    result = backend.generate(ASK, settings)
    assert (result.text, result.finish_reason) == ("Rome.", "stop")
    assert result.output_tokens == len(" Rome.\nQ:")  # generation stopped at the marker, not at 40
    chunks = list(backend.stream(ASK, settings))
    assert "".join(c.delta for c in chunks[:-1]) == "Rome."
    final = chunks[-1].result
    assert final is not None and (final.text, final.output_tokens) == ("Rome.", result.output_tokens)
    longer = [{"role": "user", "content": "and what is the capital of italy, please?"}]
    batch = backend.generate_batch([ASK, longer], settings)
    assert [(r.text, r.output_tokens) for r in batch] == [("Rome.", result.output_tokens)] * 2


def test_a_pad_token_the_model_writes_mid_answer_is_one_of_its_tokens(tmp_path: Path) -> None:
    """A pad that is not the EOS is padding only after a row's end (generate counted up to the
    first pad, and cut the text there, where the stream went on)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_scripted_model(tmp_path, ": abX")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    x, colon, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("X", ":", tokenizer.pad_token))
    assert pad != tokenizer.eos_token_id
    with torch.no_grad():  # ": abX<pad>: abX<pad>..." for ever
        model.lm_head.weight[colon, x] = 0.0
        model.lm_head.weight[pad, x] = 1.0
        model.lm_head.weight[tokenizer.eos_token_id, pad] = 0.0
        model.lm_head.weight[colon, pad] = 1.0
    model.save_pretrained(path)
    backend = backend_for(path)
    settings = GenerationSettings(max_new_tokens=12)
    one = backend.generate(ASK, settings)
    streamed = list(backend.stream(ASK, settings))[-1].result
    batched = backend.generate_batch([ASK], settings)[0]
    assert streamed is not None
    assert one.output_tokens == batched.output_tokens == streamed.output_tokens == 12  # was 4 (up to the pad)
    assert one.text == batched.text == streamed.text and one.text.count("abX") >= 2  # was 'abX'


def test_a_chat_template_model_is_not_cut_at_turn_markers(tmp_path: Path) -> None:
    backend = backend_for(build_scripted_model(tmp_path, "] Rome.\nQ:", chat_template=True))
    assert backend.uses_chat_template and not backend.stops_at_turn_markers
    result = backend.generate(ASK, GenerationSettings(max_new_tokens=20))
    assert result.text.startswith(" Rome.\nQ:] Rome.") and result.finish_reason == "length"


def test_turn_markers_cut_plain_answers_and_streams() -> None:
    assert truncate_at_stop("Paris.\nStudent: and Rome?", [], turn_markers=True) == ("Paris.", True)
    assert truncate_at_stop("Paris.\nAssistant: again", [], turn_markers=True) == ("Paris.", True)
    assert truncate_at_stop("Paris.\nStudent: and Rome?", []) == ("Paris.\nStudent: and Rome?", False)
    assert truncate_at_stop("one\ntwo: three\nStep 2: go", [], turn_markers=True) == (
        "one\ntwo: three\nStep 2: go",
        False,
    )
    text = "Paris is the capital.\nIt is large.\nUser: thanks"
    buffer = StopBuffer([], turn_markers=True)
    streamed = "".join(buffer.push(char) for char in text) + buffer.flush()
    assert streamed == "Paris is the capital.\nIt is large." and buffer.stopped
    buffer = StopBuffer([], turn_markers=True)
    streamed = "".join(buffer.push(char) for char in "Paris.\nIt") + buffer.flush()
    assert streamed == "Paris.\nIt" and not buffer.stopped


def test_a_long_stream_is_searched_for_stops_only_where_one_can_end() -> None:
    """Each piece searched the whole text so far again (20,000 words: 5 s)."""

    def run(n: int) -> None:
        words = ["word\n" if i % 8 == 7 else "word " for i in range(n)]  # a line break every 8 words
        buffer = StopBuffer(["\nUser:"], turn_markers=True)
        streamed = "".join(buffer.push(word) for word in [*words, "\nStu", "dent: hi"]) + buffer.flush()
        assert streamed == "".join(words) and buffer.stopped  # cut at the marker split over two pieces

    assert_linear_time(run, 5000)


def test_dtype_names_are_checked() -> None:
    import torch

    from greenserv_core.backends.devices import pick_dtype

    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(InvalidInputError, match="unknown dtype 'float33'"):
        pick_dtype("cpu", "float33")
    with pytest.raises(InvalidInputError, match="unknown dtype"):
        pick_dtype("cpu", "Tensor")  # a torch attribute, but not a dtype


def test_a_gpu_that_only_emulates_bfloat16_gets_float16_and_cuda_means_the_current_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from greenserv_core.backends.devices import device_lock, pick_dtype
    from greenserv_core.hardware import bfloat16_is_fast

    capabilities = {0: (8, 0), 1: (7, 5)}  # an A100 and a T4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation included
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda d=None: capabilities[1 if d.index is None else d.index]
    )
    assert pick_dtype("cuda:0") == torch.bfloat16
    assert pick_dtype("cuda:1") == torch.float16  # was bfloat16, emulated
    assert not bfloat16_is_fast("cuda:1") and not bfloat16_is_fast("cuda")  # "cuda": the current GPU, the T4
    assert device_lock("cuda") is device_lock("cuda:1")  # was cuda:0's lock
    assert device_lock("cuda") is not device_lock("cuda:0")


def test_logprobs_of_each_generated_token_when_asked(plain_dir: Path) -> None:
    import math

    backend = backend_for(plain_dir)
    assert backend.generate(ASK, GenerationSettings(max_new_tokens=4)).token_logprobs is None
    asked = GenerationSettings(max_new_tokens=4, logprobs=True)
    one = backend.generate(ASK, asked)
    assert one.token_logprobs is not None and len(one.token_logprobs) == one.output_tokens
    assert all(value <= 0 and math.isfinite(value) for value in one.token_logprobs)
    batch = backend.generate_batch([ASK, [{"role": "user", "content": "hi"}]], asked)
    assert batch[0].token_logprobs == pytest.approx(one.token_logprobs, abs=1e-4)  # padding does not change them
    assert all(r.token_logprobs is not None and len(r.token_logprobs) == r.output_tokens for r in batch)
    streamed = list(backend.stream(ASK, asked))[-1].result
    assert streamed is not None and streamed.token_logprobs == pytest.approx(one.token_logprobs, abs=1e-4)


# ---- found by review (2026-12-05) ------------------------------------------------------------
def test_a_stop_string_is_looked_for_in_the_new_text_only(scripted_dir: Path) -> None:
    backend = backend_for(scripted_dir)
    assert backend.render(ASK).endswith("Assistant:")  # so "t: " would match across the prompt's end
    for settings in (GenerationSettings(max_new_tokens=40, stop=("t: ",)), GenerationSettings(max_new_tokens=40)):
        result = backend.generate(ASK, settings)
        assert (result.text, result.finish_reason) == ("Rome.", "stop")
    assert GenerationSettings(stop="t: ").stop == ("t: ",)  # a string is one stop sequence, not its letters


def test_a_row_counts_its_tokens_up_to_the_stop_and_says_why_it_ended(scripted_dir: Path, tmp_path: Path) -> None:
    import torch

    backend = backend_for(scripted_dir)
    backend.load()
    eos = backend.tokenizer.eos_token_id
    ids = backend.tokenizer(" Rome.\nQ", add_special_tokens=False)["input_ids"]
    row = torch.tensor([*ids, eos, eos])  # a batch pads a finished row; here the pad is the EOS token
    assert backend._outcome(row, len(ids) + 1, ["me"]) == ("Ro", 5, "stop", 3)  # " Rome" completed the stop
    assert backend._outcome(row, len(ids) + 1, [])[1:] == (len(ids) + 1, "stop", len(ids))  # ended at EOS (not read)
    assert backend._outcome(row[:3], 3, [])[1:] == (3, "length", 3)  # cut by the limit (or max_time_s)
    chat = backend_for(build_scripted_model(tmp_path / "chat", ": Rome.\nQ", chat_template=True))
    first = chat.generate(ASK, GenerationSettings(max_new_tokens=1))  # "[assistant]" ends in no script letter
    assert (first.text, first.output_tokens, first.finish_reason) == ("", 1, "stop")


def test_a_call_that_fails_fails_alone_and_a_seeded_sample_does_not_depend_on_the_load(
    plain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    backend = backend_for(plain_dir)
    seeded = GenerationSettings(max_new_tokens=8, temperature=1.0, seed=7)
    alone = backend.generate(ASK, seeded).text
    bad: list[dict[str, object]] = [{"role": "user", "content": 42}]
    calls = (
        [(ASK, seeded)] * 4
        + [(bad, GenerationSettings(max_new_tokens=4))]
        + [(ASK, GenerationSettings(max_new_tokens=4))] * 3
    )
    single = backend._generate_prompts

    def no_batches(prompts, settings):  # type: ignore[no-untyped-def]
        if len(prompts) > 1:
            raise RuntimeError("a batch failed")
        return single(prompts, settings)

    monkeypatch.setattr(backend, "_generate_prompts", no_batches)
    out: dict[int, object] = {}
    start = threading.Barrier(len(calls))

    def call(i: int) -> None:
        start.wait()
        try:
            out[i] = backend.generate(calls[i][0], calls[i][1])  # type: ignore[arg-type]
        except Exception as error:
            out[i] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [out[i].text for i in range(4)] == [alone] * 4  # type: ignore[attr-defined]
    assert isinstance(out[4], InvalidInputError)
    assert all(out[i].output_tokens >= 1 for i in range(5, 8))  # type: ignore[attr-defined]


def test_a_stream_leaves_the_device_to_other_calls_while_it_is_read(plain_dir: Path) -> None:
    import threading

    backend, other = backend_for(plain_dir), backend_for(plain_dir, name="other")
    finished: list[bool] = []

    def read() -> None:
        for chunk in backend.stream(ASK, GenerationSettings(max_new_tokens=6)):
            if chunk.result is None and not finished:
                finished.append(other.generate(ASK, GenerationSettings(max_new_tokens=2)).output_tokens >= 1)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive() and finished == [True]


def test_sampling_draws_from_the_whole_vocabulary_and_a_meter_object_falls_back(plain_dir: Path) -> None:
    from greenserv_core.energy.base import TimedMeter

    backend = backend_for(plain_dir)
    kwargs = backend._generate_kwargs(GenerationSettings(temperature=0.7), [], 4)
    assert kwargs["top_k"] == 0 and kwargs["top_p"] == 1.0  # not transformers' default top-50

    class Broken(TimedMeter):
        source, measured = "broken-counter", True

        def _start(self) -> object:
            raise OSError("counter gone")

        def _stop(self, token: object, duration_s: float) -> float:
            return 0.0

    kept = backend_for(plain_dir, meter=Broken()).generate(ASK, GenerationSettings(max_new_tokens=2))
    assert kept.energy.source == "cpu-time-estimate" and not kept.energy.measured  # the answer is kept

    class BrokenGuess(Broken):  # an estimate of one's own (it threw the answer away)
        source, measured = "my-guess", False

    kept = backend_for(plain_dir, meter=BrokenGuess()).generate(ASK, GenerationSettings(max_new_tokens=2))
    assert kept.energy.source == "cpu-time-estimate" and not kept.energy.measured


def test_a_template_that_drops_system_messages_gets_them_in_the_first_user_turn(chat_dir: Path) -> None:
    dropping = backend_for(chat_dir, name="dropping")
    dropping.tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'system' %}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert not dropping.template_takes_system
    assert "Be brief." in dropping.render([{"role": "system", "content": "Be brief."}, *ASK])


def test_offered_tools_that_overflow_the_context_make_the_model_unavailable(plain_dir: Path) -> None:
    from greenserv_core.errors import ModelUnavailableError

    tool = ToolSpec.from_openai(
        {
            "name": "get_weather",
            "description": "Weather for a city, today or on a given date, in Celsius",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    )
    small = TransformersBackend(
        ModelSpec("small-window", path=str(plain_dir), context_window=64),
        device="cpu",
        meter=CpuTimeEstimateMeter(),
        memory=ModelMemory(),
    )
    assert small.count_tokens(ASK) + 4 < 64  # the router's count fits; the tools prompt does not
    with pytest.raises(ModelUnavailableError, match=r"with its tools is .* context window of 64"):
        small.generate(ASK, GenerationSettings(max_new_tokens=4, tools=(tool,)))
    assert small.generate(ASK, GenerationSettings(max_new_tokens=4)).output_tokens >= 1


def test_the_router_counts_a_local_prompt_only_where_its_bound_might_not_fit(plain_dir: Path) -> None:
    """The bound is never below the count; where it fits the window with the answer, the
    tokenizer does not run; near the window, and for a model with a per-token prior, the
    count is exact and the window rule as before."""
    texts = ["a", "what is the capital of france?", "é\u2028x\n\n" * 7, "word " * 300, "ﷺ ﬁ 𝔘 ß " * 20]
    spec = ModelSpec("tiny", path=str(plain_dir), context_window=256)

    def backend(**spec_options: object) -> TransformersBackend:
        made = TransformersBackend(
            replace(spec, **spec_options), device="cpu", meter=CpuTimeEstimateMeter(), memory=ModelMemory()
        )
        for text in texts:
            messages = [{"role": "user", "content": text}]
            assert made.token_bound(messages) >= made.count_tokens(messages)
        return made

    short, long = [{"role": "user", "content": "hi"}], [{"role": "user", "content": "word " * 60}]
    plain, weighed = backend(), backend(name="weighed", prior_joules_per_token=0.5)
    counts: list[str] = []
    for model in (plain, weighed):
        count = model.count_tokens
        model.count_tokens = lambda m, c=count, n=model.name: (counts.append(n), c(m))[1]  # type: ignore[method-assign]
    router = GreenServRouter([plain, weighed], features=make_hashing_extractor(), seed=0)
    router.route(short, max_new_tokens=8)
    assert counts == ["weighed"]  # its prior weighs the count; the bound of the other fits
    assert plain.count_tokens(long) + 8 <= 256 < plain.token_bound(long) + 8
    counts.clear()
    assert router.route(long, max_new_tokens=8).excluded == {} and counts == ["tiny", "weighed"]
    too_long = 256 - plain.count_tokens(long) + 1
    with pytest.raises(NoEligibleModelError, match="exceed the context window 256"):
        router.route(long, max_new_tokens=too_long)
    from greenserv_core import FakeBackend
    from greenserv_core.cascades.backend import CascadeBackend

    both = CascadeBackend(plain, weighed)
    assert both.token_bound(long) == plain.token_bound(long)  # the larger of the two: the same template
    assert getattr(CascadeBackend(plain, FakeBackend("fake")), "token_bound", None) is None  # counted exactly


def test_a_model_acquired_while_it_is_unloaded_waits_until_it_is_out() -> None:
    import threading
    import time

    memory, events = ModelMemory(budget_bytes=100), []

    class Slow:
        def __init__(self, name: str) -> None:
            self.name = name

        def unload(self) -> None:
            events.append(f"unloading {self.name}")
            time.sleep(0.2)
            events.append(f"unloaded {self.name}")

    first, second = Slow("a"), Slow("b")
    memory.loaded(first, 60)
    loading = threading.Thread(target=memory.loaded, args=(second, 60))
    loading.start()
    while not events:
        time.sleep(0.005)
    memory.acquire(first)  # a generation starts on the model chosen to make room
    events.append("acquired a")
    loading.join()
    assert events == ["unloading a", "unloaded a", "acquired a"]  # then it loads again, counted


def test_a_backend_nobody_holds_stops_counting_against_the_memory() -> None:
    import gc

    class Model:
        name = "m"

        def unload(self) -> None: ...

    memory = ModelMemory()
    memory.loaded(Model(), 50)
    gc.collect()
    assert memory.used_bytes == 0


def test_counting_an_answer_does_not_load_an_unloaded_model_again(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    backend.generate(ASK, GenerationSettings(max_new_tokens=2))
    backend.unload()
    assert backend._eos_ids() and not backend.is_loaded


def test_a_seeded_sample_is_the_same_alone_and_in_a_batch(plain_dir: Path) -> None:
    backend = backend_for(plain_dir)
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, seed=3)
    other = [{"role": "user", "content": "name three colours of the rainbow please, in order"}]
    alone = backend.generate(ASK, settings).text
    assert backend.generate_batch([ASK, other], settings)[0].text == alone


def test_a_prompt_past_the_context_window_makes_the_model_unavailable(plain_dir: Path) -> None:
    from greenserv_core.errors import ModelUnavailableError

    small = backend_for(plain_dir)  # a window of 256 tokens
    with pytest.raises(ModelUnavailableError, match="exceeds the context window of 256"):
        small.generate(ASK, GenerationSettings(max_new_tokens=250))
    assert small.generate("what is the capital of france?", GenerationSettings(max_new_tokens=2)).output_tokens >= 1


def test_a_batch_refuses_only_its_prompts_past_the_context_window(plain_dir: Path) -> None:
    from greenserv_core.errors import BatchItemsUnavailableError

    small = backend_for(plain_dir)  # a window of 256 tokens
    long = [{"role": "user", "content": "why " * 600}]
    with pytest.raises(BatchItemsUnavailableError, match="batch item 1: tiny: the prompt is") as refused:
        small.generate_batch([ASK, long, ASK], GenerationSettings(max_new_tokens=4))
    assert list(refused.value.items) == [1] and not small.is_loaded  # refused before anything ran


def test_generation_settings_take_numpy_integers_and_refuse_what_is_not_a_setting() -> None:
    import numpy as np

    settings = GenerationSettings(max_new_tokens=np.int64(8), stop=None, tools=[], seed=np.int64(3))  # type: ignore[arg-type]
    assert (settings.max_new_tokens, settings.stop, settings.tools, settings.seed) == (8, (), (), 3)
    assert type(settings.max_new_tokens) is int and hash(settings)  # frozen, and hashable: equal settings batch
    for bad in ({"max_new_tokens": True}, {"seed": 2**64}, {"seed": -1}, {"stop": 5}):
        with pytest.raises(InvalidInputError):
            GenerationSettings(**bad)  # type: ignore[arg-type]


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_tool_results_reach_templates_without_a_tool_role_and_are_not_wrapped_twice(chat_dir: Path) -> None:
    from greenserv_core.tools import tool_result_turn, with_tool_calls

    weather = ToolSpec("get_weather", "Weather in a city.", '{"type": "object", "properties": {}}')
    turns = [*ASK, {"role": "assistant", "content": with_tool_calls("", [("get_weather", {})])}]
    turns += [{"role": "tool", "content": tool_result_turn("5555")}, {"role": "tool", "content": tool_result_turn("6")}]
    dropping = backend_for(chat_dir, name="two-roles")
    dropping.tokenizer.chat_template = (  # renders user and assistant turns only, as TinyLlama's does
        "{% for m in messages %}{% if m['role'] in ['user', 'assistant'] %}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert not dropping.template_takes_tool_turns
    prompt = dropping.render(turns, [weather])
    assert "[user] <tool_response>\n5555\n</tool_response>\n<tool_response>\n6\n</tool_response>" in prompt  # dropped

    native = backend_for(chat_dir, name="native-tools")
    native.tokenizer.chat_template = TOOLS_TEMPLATE  # renders tools and tool turns itself
    assert native.template_takes_tool_turns
    assert "[tool] 5555\n" in native.render(turns, [weather])  # was "[tool] <tool_response>\n5555\n</tool_response>"
    hermes = backend_for(chat_dir, name="hermes")  # tools in the system prompt: results keep Hermes's wrapper
    assert "[tool] <tool_response>\n5555\n</tool_response>" in hermes.render(turns, [weather])


def test_a_plain_format_answer_drops_the_log_probabilities_of_its_stripped_leading_space(tmp_path: Path) -> None:
    backend = backend_for(build_scripted_model(tmp_path, ": Rome.\nQ"))
    settings = GenerationSettings(max_new_tokens=4, logprobs=True)
    result = backend.generate(ASK, settings)
    streamed = list(backend.stream(ASK, settings))[-1].result
    assert result.text == "Rom" and result.output_tokens == 4  # " Rom": the space is a token of its own
    assert result.token_logprobs is not None and len(result.token_logprobs) == 3  # was 4: the space's first
    assert streamed is not None and streamed.token_logprobs == result.token_logprobs


def test_models_kept_over_the_budget_while_one_is_busy_are_unloaded_once_it_is_idle() -> None:
    class Model:
        def __init__(self, name: str) -> None:
            self.name, self.unloaded = name, False

        def unload(self) -> None:
            self.unloaded = True

    memory = ModelMemory(budget_bytes=100)
    busy, other = Model("busy"), Model("other")
    memory.loaded(busy, 60)
    memory.acquire(busy)  # answering (a stream being read)
    memory.loaded(other, 60)  # loads meanwhile: the busy one is kept, over the budget
    assert not busy.unloaded and memory.used_bytes == 120
    memory.release(busy)
    assert other.unloaded and memory.used_bytes == 60  # both were kept over the budget until another model loaded
    assert not busy.unloaded  # the model just used stays: alone over a budget, it would reload on every call
    alone = ModelMemory(budget_bytes=50)
    alone.loaded(busy, 60)
    alone.acquire(busy)
    alone.release(busy)
    assert alone.used_bytes == 60


# ---- review fixes (local models) ------------------------------------------------------------------
def test_log_probabilities_end_with_an_answer_cut_at_a_turn_marker_or_a_stop_string(scripted_dir: Path) -> None:
    backend = backend_for(scripted_dir)
    for settings, text in (
        (GenerationSettings(max_new_tokens=40, logprobs=True), "Rome."),  # generated " Rome.\nQ:"
        (GenerationSettings(max_new_tokens=40, logprobs=True, stop=("e.",)), "Rom"),  # generated " Rome."
    ):
        one = backend.generate(ASK, settings)
        [batched] = backend.generate_batch([ASK], settings)
        streamed = list(backend.stream(ASK, settings))[-1].result
        assert streamed is not None
        for result in (one, batched, streamed):
            assert result.text == text and result.output_tokens > len(text) + 1  # the cut tokens are still counted
            assert result.token_logprobs is not None and len(result.token_logprobs) == len(text)  # one byte a token


def test_a_user_turn_after_a_tool_result_joins_it_for_a_template_whose_roles_alternate(chat_dir: Path) -> None:
    from greenserv_core.tools import tool_result_turn, with_tool_calls

    alternating = backend_for(chat_dir, name="alternating")
    alternating.tokenizer.chat_template = (  # as Gemma-3's: no tool role, and roles must alternate
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
        "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert not alternating.template_takes_tool_turns
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": with_tool_calls("", [("get_weather", {"city": "Paris"})])},
        {"role": "tool", "content": tool_result_turn("18C")},
        {"role": "user", "content": "An umbrella?"},
    ]
    prompt = alternating.render(turns)  # was refused: "Conversation roles must alternate"
    assert "[user] <tool_response>\n18C\n</tool_response>\n\nAn umbrella?\n[assistant]" in prompt


def test_a_plain_format_stream_strips_a_held_back_tail_as_generate_does(tmp_path: Path) -> None:
    backend = backend_for(build_scripted_model(tmp_path, ":\nA"))  # answers "\nA", which may open a turn marker
    settings = GenerationSettings(max_new_tokens=2)
    whole = backend.generate(ASK, settings)
    chunks = list(backend.stream(ASK, settings))
    assert chunks[-1].result is not None and whole.text == chunks[-1].result.text == "A"  # the stream's was "\nA"
    assert [c.delta for c in chunks] == ["A", ""]


def test_a_bad_memory_budget_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.backends import memory

    for value in ("abc", "inf", "nan", "0", "1.5GB", "-2"):
        monkeypatch.setattr(memory, "_default", None)
        monkeypatch.setenv("GREENSERV_MEMORY_BUDGET_GB", value)
        with pytest.raises(InvalidInputError, match=f"GREENSERV_MEMORY_BUDGET_GB .*'{value}'"):
            memory.default_memory()  # was a bare ValueError or OverflowError
    monkeypatch.setattr(memory, "_default", None)
    monkeypatch.setenv("GREENSERV_MEMORY_BUDGET_GB", "1.5")
    assert memory.default_memory().budget_bytes == int(1.5 * 1024**3)


def test_a_path_that_is_not_a_directory_is_named_and_never_looked_up_on_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    monkeypatch.chdir(tmp_path)
    for path in (str(tmp_path / "models" / "Qwen2.5-0.5B-Instruct"), "models/Qwen2.5-0.5B-Instruct"):
        backend = TransformersBackend(ModelSpec("qwen", path=path), device="cpu", meter=CpuTimeEstimateMeter())
        for read in (lambda b: b.info, lambda b: b.tokenizer, lambda b: b.load()):
            with pytest.raises(MissingResourceError, match="no model directory at") as refused:
                read(backend)
            assert str(tmp_path / "models" / "Qwen2.5-0.5B-Instruct") in str(refused.value)
            assert "Repo id" not in str(refused.value)
    seen: list[dict[str, object]] = []

    def spy(source: str, **options: object) -> None:
        seen.append(options)
        raise OSError("no config.json")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    with pytest.raises(MissingResourceError, match=r"no config\.json"):
        _ = TransformersBackend(ModelSpec("empty", path="."), device="cpu", meter=CpuTimeEstimateMeter()).info
    assert seen == [{"gguf_file": None, "local_files_only": True}]


def test_a_model_that_fails_to_unload_still_counts_and_the_others_are_unloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    class Model:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail, self.unloaded = name, fail, False

        def unload(self) -> None:
            if self.fail:
                raise RuntimeError(f"{self.name}: CUDA error while freeing")
            self.unloaded = True

    memory = ModelMemory(budget_bytes=100)
    a, b, c = Model("a", fail=True), Model("b"), Model("c")
    memory.loaded(a, 40)
    memory.loaded(b, 40)
    with caplog.at_level(logging.WARNING, logger="greenserv"):
        memory.loaded(c, 90)  # both must go; a's unload fails first (was raised here, b left being unloaded)
    assert b.unloaded and not a.unloaded and "could not unload a" in caplog.text
    assert memory.used_bytes == 130  # a's weights are probably still there: they count again
    acquired = threading.Event()
    threading.Thread(target=lambda: (memory.acquire(b), acquired.set()), daemon=True).start()
    assert acquired.wait(2)  # was blocked for ever
    a.fail = False
    d = Model("d")
    memory.loaded(d, 10)
    assert a.unloaded and not c.unloaded and memory.used_bytes == 100  # a is the first tried again


# ---- review fixes (generation settings) ----------------------------------------------------------------
def test_any_real_temperature_top_p_and_time_limit_are_kept_as_python_floats(plain_dir: Path) -> None:
    import json
    from fractions import Fraction

    import numpy as np

    backend = backend_for(plain_dir)
    for temperature, top_p, seconds in ((2, 1, 30), (np.float32(0.7), Fraction(9, 10), np.float64(5.0))):
        settings = GenerationSettings(2, temperature, top_p, max_time_s=seconds)  # type: ignore[arg-type]
        kept = (settings.temperature, settings.top_p, settings.max_time_s)
        assert [type(v) for v in kept] == [float] * 3 and kept == pytest.approx((temperature, top_p, seconds))
        json.dumps(kept)  # a remote server's request body (numpy's float32 and Fraction were not JSON)
        assert backend.generate(ASK, settings).output_tokens >= 1  # transformers refused all but a float
    for bad in ({"temperature": 10**400}, {"top_p": np.float32("nan")}, {"max_time_s": Fraction(-1, 2)}):
        with pytest.raises(InvalidInputError):
            GenerationSettings(**bad)  # type: ignore[arg-type]


def test_an_infinite_time_limit_is_no_limit_and_nan_is_refused() -> None:
    import math

    import numpy as np

    for endless in (math.inf, np.float64("inf"), 10**400):
        assert GenerationSettings(max_time_s=endless).max_time_s is None  # was kept: a remote Timer(inf) overflowed
    for bad in (math.nan, -math.inf, 0):
        with pytest.raises(InvalidInputError, match="max_time_s must be a positive number"):
            GenerationSettings(max_time_s=bad)


def test_a_cpu_whose_avx512_only_emulates_bfloat16_is_not_fast_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from greenserv_core.hardware import bfloat16_is_fast

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)  # any AVX-512
    for avx512_bf16, amx, fast in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert bfloat16_is_fast("cpu") is fast  # was True on a Cascade Lake: oneDNN's flag


def test_an_answer_that_ended_at_eos_reads_no_log_probability_of_the_eos_token(tmp_path: Path) -> None:
    """Every confidence signal reads the answer's log-probabilities: the end-of-sequence
    token's (p about 0.56 after SmolLM2's answers) was multiplied into them."""
    import torch

    backend = backend_for(build_scripted_model(tmp_path, "] Rome.", chat_template=True))
    backend.load()
    tokenizer = backend.tokenizer
    answer = tokenizer.encode("Rome.", add_special_tokens=False)
    row = torch.tensor([*answer, tokenizer.eos_token_id])
    assert backend._outcome(row, len(row), ()) == ("Rome.", len(row), "stop", len(answer))  # was len(row)
    logprobs = torch.log(torch.tensor([0.9] * len(answer) + [0.5]))
    assert len(backend._answer_logprobs(row, logprobs, len(answer))) == len(answer)
    cut = torch.tensor([*answer, *tokenizer.encode("Q", add_special_tokens=False)])  # the token limit: all read
    assert backend._outcome(cut, len(cut), ())[2:] == ("length", len(cut))


def test_a_stop_only_in_the_plain_formats_leading_space_does_not_cut_the_answer(tmp_path: Path) -> None:
    backend = backend_for(build_scripted_model(tmp_path, ":\nA"))  # answers "\nA" after "Assistant:"
    settings = GenerationSettings(max_new_tokens=2, stop=("\n",))
    result = backend.generate(ASK, settings)
    assert result.text == "A"  # was "": the stop matched the newline that is then stripped
    streamed = list(backend.stream(ASK, settings))
    assert "".join(chunk.delta for chunk in streamed) == "A" == streamed[-1].result.text  # type: ignore[union-attr]
    marker = backend_for(build_scripted_model(tmp_path / "marker", ":\nUser"))  # a turn marker that begins there
    assert marker.generate(ASK, GenerationSettings(max_new_tokens=8)).text == ""  # still cut


def test_a_weights_file_cut_short_is_a_missing_resource_naming_the_model(plain_dir: Path, tmp_path: Path) -> None:
    import shutil

    from greenserv_core.errors import MissingResourceError

    copy = tmp_path / "cut"
    shutil.copytree(plain_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(MissingResourceError, match=f"cannot load model .* from {copy}"):  # was a bare SafetensorError
        backend_for(copy).load()


def test_a_seeded_generation_holds_the_process_wide_seeding_lock_from_its_seed_to_its_end(
    plain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.manual_seed seeds every device's random stream: a seeded call on another device,
    under another device lock, reseeded this one's mid-answer."""
    import threading

    import torch

    from greenserv_core.backends import transformers as module

    held: list[bool] = []
    seeding = threading.Lock()
    real_seed = torch.manual_seed
    monkeypatch.setattr(module, "_SEEDING", seeding)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: (held.append(seeding.locked()), real_seed(seed))[1])
    backend = backend_for(plain_dir)
    seeded = GenerationSettings(max_new_tokens=3, temperature=1.0, seed=7)
    backend.generate(ASK, seeded)
    list(backend.stream(ASK, seeded))
    backend.generate(ASK, GenerationSettings(max_new_tokens=3, temperature=1.0))
    assert held == [True, True]  # seeded under the lock (was the device's lock alone); unseeded: no seed
    assert not seeding.locked()


def test_a_device_torch_does_not_know_or_cannot_reach_is_refused_at_construction(
    plain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from greenserv_core.errors import InvalidInputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, said in (("cdua", "unknown device 'cdua'"), ("cuda:1", "torch sees no CUDA GPU")):
        with pytest.raises(InvalidInputError, match=said):  # was a bare error at the first answer, after the load
            TransformersBackend(ModelSpec("tiny", path=str(plain_dir)), device=device, meter=CpuTimeEstimateMeter())
    assert backend_for(plain_dir).device == "cpu"


# ---- review fixes (2026-12-08) ----------------------------------------------------------------------
def test_a_dtype_or_device_torch_cannot_run_is_refused_when_the_backend_is_made(
    plain_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from greenserv_core.backends.devices import pick_device, pick_dtype

    for dtype in ("bfloat61", "int8", "bool", "float8_e4m3fn"):  # each failed later as a model that cannot load
        with pytest.raises(InvalidInputError, match="dtype"):
            backend_for(plain_dir, dtype=dtype)
    assert pick_dtype("cpu", "auto") == torch.float32  # transformers' spelling of the default
    assert backend_for(plain_dir, dtype="float32").generate(ASK, GenerationSettings(max_new_tokens=2)).text is not None
    for device in ("hip", "xla", "hpu", "meta"):  # hip and xla failed with a RuntimeError at the first answer
        with pytest.raises(InvalidInputError, match="cannot run a model there"):
            pick_device(device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == "cuda:0"
    with pytest.raises(InvalidInputError, match="sees 1 CUDA GPU"):
        pick_device("cuda:7")


def test_a_spec_that_asks_for_a_chat_template_the_tokenizer_lacks_is_refused(plain_dir: Path) -> None:
    backend = TransformersBackend(
        ModelSpec("plain", path=str(plain_dir), chat_template=True),
        device="cpu",
        meter=CpuTimeEstimateMeter(),
        memory=ModelMemory(),
    )
    with pytest.raises(InvalidInputError, match="its tokenizer has no chat template"):
        backend.info  # noqa: B018  # was: every conversation refused as bad input


def test_an_interrupt_in_a_failed_batch_s_retries_ends_every_call_of_the_batch(plain_dir: Path) -> None:
    import threading
    import time

    from greenserv_core.backends.devices import device_lock

    backend = backend_for(plain_dir)
    settings = GenerationSettings(max_new_tokens=2)
    sizes: list[int] = []

    def failing(prompts, settings):  # type: ignore[no-untyped-def]
        sizes.append(len(prompts))
        if len(prompts) > 1:
            raise RuntimeError("the batch failed (out of memory)")
        raise KeyboardInterrupt  # Ctrl-C during the one-at-a-time retry

    backend._generate_prompts = failing  # type: ignore[method-assign]
    outcome: dict[int, str] = {}

    def call(i: int) -> None:
        try:
            backend.generate([{"role": "user", "content": f"q{i}"}], settings)
        except BaseException as error:
            outcome[i] = type(error).__name__

    lock = device_lock("cpu")
    with lock:  # the device is busy: both calls queue up and are run as one batch
        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
    for t in threads:
        t.join(10)
    assert sizes == [2, 1] and outcome == {0: "KeyboardInterrupt", 1: "KeyboardInterrupt"}  # was an IndexError

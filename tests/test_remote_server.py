"""Remote arms against a real OpenAI-compatible server on loopback: Hugging Face's
``transformers serve`` serving the bundled SmolLM2-135M-Instruct from the model cache.

Covered: routed generation and streaming with the server's token usage, a server killed in
the middle of a stream, a server that does not answer in time, and the router moving the
traffic to another model while the dead one cools down.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.backends import GenerationSettings
from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend
from greenserv_core.errors import ModelUnavailableError
from greenserv_core.models.bundled import converted_dir, is_converted
from tests.conftest import make_hashing_extractor
from tests.services import ModelServer, missing

MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "Name a colour of the sky."}]


def model_dir() -> Path:
    if not is_converted(MODEL):
        missing(f"the converted bundled model {MODEL} (run ./setup.sh)")
    return converted_dir(MODEL)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelServer, ModelServer]]:
    """The server the tests share, and one for the test that kills its own, started at once
    (each takes about half a minute to start on CI's two cores, mostly one core's work)."""
    folder = tmp_path_factory.mktemp("serve")
    started = [ModelServer(model_dir(), folder, wait=False) for _ in range(2)]
    try:
        for running in started:
            running.wait_ready()
        yield started[0], started[1]
    finally:
        for running in started:
            running.kill()


@pytest.fixture
def server(servers: tuple[ModelServer, ModelServer]) -> ModelServer:
    return servers[0]


@pytest.fixture
def dying(servers: tuple[ModelServer, ModelServer]) -> ModelServer:
    return servers[1]


def remote(server: ModelServer, **options: object) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(server.base_url, str(server.model_dir), name="smollm2-remote", **options)  # type: ignore[arg-type]


def test_routed_generation_and_stream_through_a_real_server(server: ModelServer) -> None:
    router = GreenServRouter([remote(server)], features=make_hashing_extractor(), seed=0)
    answer = router.generate(ASK, max_new_tokens=12)
    assert answer.model == "smollm2-remote" and answer.text.strip()
    assert answer.input_tokens > 5 and 0 < answer.output_tokens <= 12  # the server's own usage
    assert answer.energy_source == "estimate-latency-x-300W" and not answer.energy_measured
    chunks = list(router.stream(ASK, max_new_tokens=12))
    final = chunks[-1].generation
    assert final is not None and "".join(c.delta for c in chunks[:-1]) == final.text
    assert final.output_tokens > 0
    assert router.feedback(final.decision_id, 1.0).applied


def test_prompt_tokens_counted_with_the_model_tokenizer_match_the_server(server: ModelServer) -> None:
    exact = remote(server, tokenizer=server.model_dir)
    result = exact.generate(ASK, GenerationSettings(max_new_tokens=4))
    assert exact.count_tokens(ASK) == result.input_tokens  # the server's usage
    assert remote(server).count_tokens(ASK) != result.input_tokens  # the estimate is only that


def test_a_server_killed_mid_stream(dying: ModelServer) -> None:
    arm = OpenAICompatibleBackend(
        dying.base_url, str(dying.model_dir), name="dying", max_retries=1, backoff_s=0.0, failure_threshold=2
    )
    long_answer = GenerationSettings(max_new_tokens=400, temperature=0.0)
    pieces = []
    with pytest.raises(ModelUnavailableError, match="broke after"):
        for chunk in arm.stream([{"role": "user", "content": "Write a long story about a dragon."}], long_answer):
            pieces.append(chunk.delta)
            if len(pieces) == 2:
                dying.kill()
    assert len(pieces) >= 2
    # nothing listens any more: the next request cannot connect, and the model cools down
    with pytest.raises(ModelUnavailableError, match="ConnectError"):
        arm.generate(ASK, GenerationSettings(max_new_tokens=8))
    assert not arm.available
    # the router leaves it out and sends the traffic to the other model
    router = GreenServRouter([arm, FakeBackend("local")], features=make_hashing_extractor(), seed=0)
    assert router.route(ASK).excluded["dying"] == "unavailable (cooling down after repeated failures)"
    assert {router.generate(ASK, max_new_tokens=8).model for _ in range(3)} == {"local"}


def test_a_server_that_does_not_answer_in_time(server: ModelServer) -> None:
    slow = remote(server, request_timeout_s=0.05, max_retries=1, backoff_s=0.0)
    with pytest.raises(ModelUnavailableError, match="within request_timeout_s"):
        slow.generate(ASK, GenerationSettings(max_new_tokens=64))
    assert slow.attempts_ == 1  # sent once: the server may still be generating it
    streaming = remote(server, timeout_s=0.05, max_retries=1, backoff_s=0.0)  # 0.05 s between pieces is too short
    with pytest.raises(ModelUnavailableError, match="ReadTimeout"):
        list(streaming.stream(ASK, GenerationSettings(max_new_tokens=64)))


def test_a_listener_that_never_replies_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections are accepted by the kernel, never answered
        port = listener.getsockname()[1]
        arm = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "m", timeout_s=0.2, max_retries=2, backoff_s=0.0)
        with pytest.raises(ModelUnavailableError, match="3 attempt"):
            list(arm.stream(ASK, GenerationSettings(max_new_tokens=4)))
        arm = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "m", request_timeout_s=0.2, backoff_s=0.0)
        with pytest.raises(ModelUnavailableError, match="within request_timeout_s"):
            arm.generate(ASK, GenerationSettings(max_new_tokens=4))


def test_both_adapters_route_to_the_remote_arm(server: ModelServer) -> None:
    from llama_index.core.llms import ChatMessage

    from langchain_greenserv import ChatGreenServ
    from llama_index_greenserv import GreenServLLM

    router = GreenServRouter([remote(server), FakeBackend("local")], features=make_hashing_extractor(), seed=0)
    message = ChatGreenServ(router=router, max_tokens=8).invoke("Name a colour of the sky.", model="smollm2-remote")
    assert message.response_metadata["model_name"] == "smollm2-remote" and str(message.content).strip()
    response = GreenServLLM(router=router, max_tokens=8).chat(
        [ChatMessage(role="user", content="Name a colour of the sky.")], model="smollm2-remote"
    )
    assert response.additional_kwargs["model"] == "smollm2-remote" and (response.message.content or "").strip()


def test_the_chat_command_routes_to_a_remote_model(server: ModelServer, capsys: pytest.CaptureFixture[str]) -> None:
    from greenserv_core.cli import main

    address = f"{server.base_url}#{server.model_dir}"
    assert main(["chat", "--model", address, "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert f"pool: {server.model_dir}" in out
    assert out.count(f"[{server.model_dir}]") >= 3 and "estimate-latency-x-300W, estimated" in out


def test_a_remote_model_needs_its_id() -> None:
    from greenserv_core.errors import InvalidInputError
    from greenserv_core.models.pool import build_backends

    with pytest.raises(InvalidInputError, match="<base URL>#<model id>"):
        build_backends(["http://127.0.0.1:9/v1"])

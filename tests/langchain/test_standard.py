"""LangChain's standard chat-model suites, run against ChatGreenServ over the real bundled
models (SmolLM2-135M-Instruct and Gemma-3-270m, CPU). Capability flags are set to what is
true: text in, text out, streaming, usage metadata; no tools, structured output or images
(tool calling is a later work item)."""

from __future__ import annotations

from functools import cache
from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from greenserv_core import GreenServRouter
from greenserv_core.models.bundled import bundled_pool
from langchain_greenserv import ChatGreenServ


@cache
def shared_router() -> GreenServRouter:
    """One router (and one loaded embedder and pool) for the whole suite."""
    return GreenServRouter(bundled_pool(), strategy="linucb", tradeoff=0.4, seed=0)


class GreenServCapabilities:
    """What ChatGreenServ is, and claims, in both suites."""

    @property
    def chat_model_class(self) -> type[ChatGreenServ]:
        return ChatGreenServ

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestChatGreenServUnit(GreenServCapabilities, ChatModelUnitTests):
    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # local models take no API key: ChatGreenServ refuses unknown arguments, so leave it out
        return {k: v for k, v in super().standard_chat_model_params.items() if k != "api_key"}

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"models": ["smollm2-135m-instruct", "gemma-3-270m"]}


class TestChatGreenServIntegration(GreenServCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": shared_router(), "max_tokens": 24}

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def model_override_value(self) -> str:
        return "gemma-3-270m"

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        return {"invoke": [], "stream": []}


def scripted_router() -> GreenServRouter:
    """A tool- and JSON-capable scripted model (real Hermes markup) beside one that has neither."""
    from greenserv_core import FakeBackend
    from tests.conftest import make_hashing_extractor
    from tests.scripted_tools import scripted_tool_backend

    pool = [scripted_tool_backend(), FakeBackend("no-tools", joules_per_token=0.01)]
    return GreenServRouter(pool, features=make_hashing_extractor(), strategy="linucb", tradeoff=0.4, seed=0)


class ScriptedToolCapabilities(GreenServCapabilities):
    """Tool calling, JSON mode and structured output, through the router, over a scripted model."""

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": scripted_router()}


class TestChatGreenServToolsUnit(ScriptedToolCapabilities, ChatModelUnitTests):
    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {k: v for k, v in super().standard_chat_model_params.items() if k != "api_key"}


class TestChatGreenServToolsIntegration(ScriptedToolCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**super().chat_model_params, "max_tokens": 256}

    @property
    def supports_json_mode(self) -> bool:
        return True  # the scripted model has the json_mode capability

    @property
    def model_override_value(self) -> str:
        return "no-tools"  # `model=` pins the query to one model of the pool

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        return {"invoke": [], "stream": []}

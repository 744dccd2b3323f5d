"""What the library leaves to the process and to its callers: the Hub's offline setting, an
async bridge's errors, devices torch cannot use here, paths named relative to elsewhere, and
credentials in a server's redirects and malformed addresses (from a review, 2026-12-07)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from greenserv_core import InvalidInputError
from greenserv_core.async_bridge import run_in_thread
from greenserv_core.backends.devices import pick_device
from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend, remote_backend
from greenserv_core.errors import ModelUnavailableError
from greenserv_core.models import bundled_pool
from greenserv_core.paths import cache_dir


def test_building_the_bundled_pool_leaves_the_hubs_offline_setting_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """It set HF_HUB_OFFLINE=1 for the whole process: a Hub model in the same pool could no
    longer download. The bundled folders are read with local_files_only instead."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    bundled_pool()
    assert "HF_HUB_OFFLINE" not in os.environ


def test_a_stop_iteration_in_a_worker_thread_reaches_the_awaiting_caller() -> None:
    """A future cannot take a StopIteration: the await never ended."""

    def empty() -> object:
        return next(iter([]))

    async def call() -> object:
        return await asyncio.wait_for(run_in_thread(empty), timeout=5.0)

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(call())


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_torch_cannot_run_here_is_refused_when_chosen(device: str) -> None:
    """mps (where torch has none) and meta were taken, and the first answer failed after the
    weights loaded, with a bare RuntimeError."""
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(InvalidInputError, match="cannot run a model there"):
        pick_device(device)


def test_a_relative_model_folder_is_the_one_meant_when_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.backends.transformers import directory_backend

    (tmp_path / "smol").mkdir()
    monkeypatch.chdir(tmp_path)
    backend = directory_backend("smol")
    assert backend.spec.path == str(tmp_path / "smol")  # was "smol": another folder after a chdir


def test_a_cpu_with_an_index_is_the_cpu_for_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from greenserv_core.hardware import bfloat16_is_fast

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert bfloat16_is_fast("cpu:0") is bfloat16_is_fast("cpu") is True  # "cpu:0" was False


def test_a_cache_folder_under_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GREENSERV_CACHE", "~/gs-cache")
    assert cache_dir() == tmp_path / "gs-cache"  # was a folder named "~" in the working directory


def test_a_redirects_credentials_are_not_shown() -> None:
    location = "https://admin:SECRETPW@other/v1?sig=SECRETSIG"
    remote = OpenAICompatibleBackend(
        "https://host/v1",
        "m",
        transport=httpx.MockTransport(lambda r: httpx.Response(302, headers={"location": location})),
    )
    with pytest.raises(ModelUnavailableError, match="redirects") as raised:
        remote.generate([{"role": "user", "content": "hi"}], __import__("greenserv_core").GenerationSettings())
    assert "SECRET" not in str(raised.value)


@pytest.mark.parametrize("password", ["abcSECRET/xyz==", "abcSECRET#xyz"])
def test_a_password_with_a_slash_or_hash_is_refused_without_showing_it(password: str) -> None:
    """httpx.InvalidURL escaped, with part of the password in it."""
    with pytest.raises(InvalidInputError) as raised:
        remote_backend(f"https://user:{password}@host/v1#model")
    assert "SECRET" not in str(raised.value)


def test_an_error_closing_a_stream_the_caller_left_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """It was posted to a queue nobody read any more: neither raised nor logged."""
    from greenserv_core.async_bridge import iterate_in_thread

    def pieces() -> object:
        try:
            yield 1
            yield 2
        finally:
            raise OSError("releasing the device failed")

    async def leave_early() -> None:
        bridge = iterate_in_thread(pieces)  # type: ignore[arg-type]
        await bridge.__anext__()
        await bridge.aclose()

    with caplog.at_level("WARNING", logger="greenserv"):
        asyncio.run(leave_early())
    assert "releasing the device failed" in caplog.text


def test_a_bridge_dropped_mid_stream_is_collected_and_closes_its_stream() -> None:
    """The thread's error report held the bridge itself, so a bridge dropped unclosed was never
    collected: its thread and stream ran on (a review of the fix above)."""
    import gc
    import threading

    from greenserv_core.async_bridge import iterate_in_thread

    closed = threading.Event()

    def endless() -> object:
        try:
            count = 0
            while True:
                yield count
                count += 1
        finally:
            closed.set()

    async def drop_early() -> bool:
        bridge = iterate_in_thread(endless)  # type: ignore[arg-type]
        await bridge.__anext__()
        del bridge
        gc.collect()
        return await asyncio.to_thread(closed.wait, 5.0)

    assert asyncio.run(drop_early())

"""Real servers on loopback for tests: a Redis server, and an OpenAI-compatible model server.

Each is started by the test run itself. Where a program is missing the test is skipped,
unless ``GREENSERV_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which makes it fail instead:
CI must never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing(what: str) -> None:
    if os.environ.get("GREENSERV_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required here (GREENSERV_REQUIRE_SERVICES=1)")
    pytest.skip(f"{what} is not available")


def _wait(until: float, ready: object, process: subprocess.Popen[bytes], log: Path) -> None:
    while time.monotonic() < until:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(Exception):
            if ready():  # type: ignore[operator]
                return
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A throw-away ``redis-server`` on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server (Debian package redis-server)")
        raise AssertionError  # unreachable: missing() raises
    import redis

    port = free_port()
    log = folder / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait(time.monotonic() + 20, lambda: redis.Redis.from_url(url).ping(), process, log)
        yield url
    finally:
        process.kill()
        process.wait()


class ModelServer:
    """``transformers serve`` (Hugging Face's OpenAI-compatible server) over a model folder,
    ready when made (``wait=False``: started; :meth:`wait_ready` before use)."""

    def __init__(self, model_dir: Path, folder: Path, *, wait: bool = True) -> None:
        self.model_dir = model_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = folder / f"serve-{self.port}.log"
        binary = Path(sys.executable).with_name("transformers")
        if not binary.exists():
            missing("transformers serve (pip install 'transformers[serving]')")
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [str(binary), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.started = time.monotonic()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        _wait(
            self.started + 120,
            lambda: httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200,
            self.process,
            self.log,
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

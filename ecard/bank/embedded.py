"""The stand-in bank as a child process beside `ecard serve` on the embedded default."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

HOST = "127.0.0.1"
START_DEADLINE_S = 30.0
# In the stand-in's data folder: the port it listened on last, taken again at the next start when free.
PORT_FILE = "port"


@dataclass(frozen=True)
class RunningStandin:
    """A started stand-in bank: where it answers, its process, and the port it had to leave (taken by another
    program since its last start), if it had to."""

    url: str
    port: int
    pid: int
    moved_from: int | None = None


@contextlib.contextmanager
def running_standin(data_dir: Path, trust_keys_url: str | None, log: Path) -> Iterator[RunningStandin]:
    """The stand-in bank as a child process on a loopback port for as long as the block runs: the port it had the
    last time it ran on this data folder, or a free one when that is taken (or there was no last time)."""
    data_dir = data_dir.resolve()
    _stop_strays(data_dir)
    process, standin = _start(data_dir, trust_keys_url, log)
    try:
        yield standin
    finally:
        _stop(process)


def remembered_port(data_dir: Path) -> int | None:
    """The port the stand-in on this data folder had last time, if it is written down and well-formed."""
    try:
        port = int((data_dir / PORT_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def _start(data_dir: Path, trust_keys_url: str | None, log: Path) -> tuple[subprocess.Popen[bytes], RunningStandin]:
    data_dir.mkdir(parents=True, exist_ok=True)
    remembered = remembered_port(data_dir)
    for attempt in range(3):
        port = remembered if attempt == 0 and remembered is not None and _port_free(remembered) else _free_port()
        command = [sys.executable, "-m", "ecard.cli", "standin", "bank", "--host", HOST, "--port", str(port)]
        command += ["--data", str(data_dir)]
        if trust_keys_url:
            command += ["--trust-keys", trust_keys_url]
        with log.open("ab") as out:
            # Its own session: a terminal's Ctrl-C reaches `ecard serve`, which then stops the bank in order.
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True
            )
        url = f"http://{HOST}:{port}"
        if _answers(url, process):
            (data_dir / PORT_FILE).write_text(f"{port}\n", encoding="ascii")
            moved_from = remembered if remembered is not None and remembered != port else None
            return process, RunningStandin(url=url, port=port, pid=process.pid, moved_from=moved_from)
        _stop(process)
        # an early exit with the port now busy: someone took the port between our look and its bind
        if attempt < 2 and not _port_free(port):
            continue
        break
    raise RuntimeError(f"the stand-in bank did not start; see {log}")


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_DEADLINE_S
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _stop_strays(data_dir: Path) -> None:
    """A stand-in bank left on this data folder by an `ecard serve` that was killed."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.pid != os.getpid() and {"standin", "bank", str(data_dir)} <= set(cmdline):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except psutil.TimeoutExpired:
                    proc.kill()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True

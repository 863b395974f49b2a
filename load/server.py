"""Starts and stops `ecard serve` for a load run: on a fresh load database, or on the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis

from ecard.kit.infra import recreate_database

REPO = Path(__file__).resolve().parent.parent
# Pre-minted codes and pre-signed requests must outlive the run.
LONG_LIVED = {"ECARD_CODE_TTL_S": "3600", "ECARD_SIGNATURE_WINDOW_S": "3600"}
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load_database(url: str, suffix: str = "_ecard_load") -> str:
    """A fresh database `<db><suffix><ECARD_LOAD_DB_SUFFIX>` beside the configured one (dropped and made anew each
    run); ECARD_LOAD_DB_SUFFIX keeps load runs sharing one server from wiping each other's database."""
    return asyncio.run(recreate_database(url, suffix + os.environ.get("ECARD_LOAD_DB_SUFFIX", "")))


def service_env(data_dir: Path) -> dict[str, str]:
    """The environment of every `ecard` command of the run: configured services or the embedded default."""
    env = dict(os.environ)
    env.update(LONG_LIVED)
    env.update(
        ECARD_LOAD_ECHO="1",
        ECARD_REDIS_PREFIX=f"ecardload:{secrets.token_hex(6)}:",
        ECARD_DATA_DIR=str(data_dir),
    )
    database_url, redis_url = env.get("ECARD_DATABASE_URL"), env.get("ECARD_REDIS_URL")
    if database_url and redis_url:
        env["ECARD_DATABASE_URL"] = load_database(database_url)
    else:
        env.pop("ECARD_DATABASE_URL", None)
        env.pop("ECARD_REDIS_URL", None)
    return env


def ecard_cli(env: dict[str, str], *args: str) -> str:
    """Run an `ecard` command with the run's environment; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "ecard.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ecard {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@dataclass
class Server:
    """A running `ecard serve` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listens(self, process: psutil.Process) -> bool:
        try:
            conns = process.net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns)

    def app_process(self) -> psutil.Process:
        """The process that runs the app: a uvicorn worker child, or the serve process itself with one worker."""
        root = psutil.Process(self.proc.pid)
        listeners = [p for p in (root, *root.children(recursive=True)) if self._listens(p)]
        workers = [p for p in listeners if p.pid != root.pid]
        return (workers or listeners or [root])[0]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ecard serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"ecard serve not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def serving(env: dict[str, str], workers: int = 1, code: Path = REPO, port: int | None = None) -> Iterator[Server]:
    """`ecard serve` (of the source tree `code`) on `port` (a free one unless given) for the duration of the
    block; always stopped (SIGTERM, wait) after."""
    port = port or free_port()
    log = Path(env["ECARD_DATA_DIR"]) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecard.cli", "serve", "--port", str(port), "--workers", str(workers)],
            env={**env, "PYTHONPATH": str(code)},
            cwd=code,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def forget_redis_keys(env: dict[str, str]) -> int:
    """Delete the run's keys (nonces, used codes) from a configured Redis; the prefix is the run's own."""
    url = env.get("ECARD_REDIS_URL")
    if not url:
        return 0
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{env['ECARD_REDIS_PREFIX']}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted

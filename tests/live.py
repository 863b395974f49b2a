"""ecard as a real server: `ecard serve` in a process of its own, on a database and Redis prefix of its own.

For what only a live peer can show: two issuers talking to each other, a process killed mid-way, a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ecard.kit.clock import MovableClock
from ecard.kit.crypto import b64u
from ecard.kit.infra import recreate_database
from tests.support import CliRun, Parties, template_database

REPO = Path(__file__).resolve().parents[1]
START_DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` answers 200; fails the test with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"{url}: server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {START_DEADLINE_S}s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


class ServerProcess:
    """An `ecard ...` command serving HTTP on a free loopback port: started, stopped (SIGTERM) or killed."""

    name = "server"
    ready_path = "/healthz"

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._runs = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def argv(self) -> list[str]:
        """The whole command line: `ecard <command>` with this interpreter, from the repository."""
        return [sys.executable, "-m", "ecard.cli", *self.command()]

    cwd: Path = REPO

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self._runs}.log"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._runs += 1
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv(),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_answering(f"{self.base}{self.ready_path}", self.process, self.log)

    def stop(self) -> None:
        """SIGTERM, as an orderly shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: the process dies wherever it is, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class LiveEcard(ServerProcess):
    """One ecard installation (issuer `issuer`), started and stopped as a real process on a loopback port."""

    name = "serve"
    ready_path = "/readyz"

    def __init__(self, issuer: str, database_url: str, redis_url: str, folder: Path, **env: str) -> None:
        own = {name: value for name, value in os.environ.items() if not name.startswith("ECARD_")}
        own.update(
            ECARD_ISSUER_ID=issuer,
            ECARD_DATABASE_URL=database_url,
            ECARD_REDIS_URL=redis_url,
            ECARD_REDIS_PREFIX=f"ecardlive:{os.urandom(6).hex()}:",
            ECARD_SECRET_KEY=b64u(os.urandom(32)),
            ECARD_DATA_DIR=str(folder / "data"),
            PYTHONUNBUFFERED="1",
            **env,
        )
        super().__init__(folder, own)
        self.env: dict[str, str] = own
        self.issuer = issuer
        self.token: str | None = None

    @classmethod
    async def create(
        cls, issuer: str, service_urls: tuple[str, str], folder: Path, name: str | None = None, **env: str
    ) -> LiveEcard:
        """An installation on a database made afresh for it beside the test database (`<test db>_<name>`), a copy
        of the migrated template."""
        database_url, redis_url = service_urls
        own = await recreate_database(database_url, f"_{name or issuer}", template_database())
        return cls(issuer, own, redis_url, folder, **env)

    def command(self) -> list[str]:
        return ["serve", "--port", str(self.port)]

    def cli(self, *args: str) -> CliRun:
        """`ecard <args>` against this installation."""
        done = subprocess.run(
            [sys.executable, "-m", "ecard.cli", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        return CliRun(done.returncode, done.stdout.decode(), done.stderr.decode())

    def world(self, client: httpx.AsyncClient) -> LiveWorld:
        return LiveWorld(self, client)


class LiveWorld(Parties):
    """The parties of tests/support.py, talking to a live installation over loopback HTTP."""

    def __init__(self, live: LiveEcard, client: httpx.AsyncClient) -> None:
        super().__init__(client, MovableClock())
        self.live = live

    async def operator_token(self) -> str:
        # one operator per installation: making one is a process of its own, and tests share the installation
        if self.live.token is None:
            self.live.token = await super().operator_token()
        return self.live.token

    async def new_operator(self, username: str) -> tuple[str, str]:
        run = await asyncio.to_thread(self.live.cli, "operator", "add", "--username", username)
        assert run.returncode == 0, run.stderr
        made = json.loads(run.stdout)
        return made["password"], made["totp_uri"]

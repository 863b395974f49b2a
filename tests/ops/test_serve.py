"""`ecard serve` on the embedded default: comes up, seeds a demo once, shares its database, stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from ecard.kit.jwk import load_private_jwk
from ecard.kit.signing import sign_request
from tests.processes import gone, processes_for, server_pids
from tests.support import totp_now

try:
    from ecard.kit.embedded import discover
except ImportError as exc:  # pragma: no cover - depends on the platform's wheels
    pytest.skip(f"embedded PostgreSQL/Valkey wheels are not importable: {exc}", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    """The caller's environment minus every ECARD_* setting: the embedded default, under data_dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECARD_")}
    env["ECARD_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


class Servers:
    """`ecard serve` processes this test started; whatever is left at the end is killed by pid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self._runs = 0

    def start(self) -> Serving:
        self._runs += 1
        port = _free_port()
        stderr_path = self.data_dir.parent / f"serve-{self._runs}.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "ecard.cli", "serve", "--port", str(port)],
                cwd=REPO,
                env=_env(self.data_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.started.append(process)
        serving = Serving(process, port, stderr_path)
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"ecard serve exited with {process.returncode}:\n{serving.stderr[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{serving.base}/healthz", timeout=1.0).status_code == 200:
                    return serving
            if time.monotonic() > deadline:
                pytest.fail(
                    f"ecard serve did not answer /healthz within {START_DEADLINE_S}s:\n{serving.stderr[-3000:]}"
                )
            time.sleep(0.2)

    def stop(self, serving: Serving, signum: signal.Signals) -> int:
        """Send signum and wait for the process to exit; its return code."""
        serving.process.send_signal(signum)
        try:
            code = serving.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ecard serve still running {STOP_DEADLINE_S}s after {signum.name}")
        assert "Traceback" not in serving.stderr, serving.stderr[-3000:]
        return code

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for proc in processes_for(self.data_dir):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


@pytest.fixture
def servers() -> Iterator[Servers]:
    # outside pytest's base temp, which other pytest sessions close to root alone (see tests/kit/test_embedded.py)
    folder = Path(tempfile.mkdtemp(prefix="ecard-serve-"))
    started = Servers(folder / "data")
    try:
        yield started
    finally:
        started.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _issuer_kids(serving: Serving) -> list[str]:
    answer = httpx.get(f"{serving.base}/v1/issuer/keys", timeout=5.0)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["issuer"] == "cq"
    return [key["kid"] for key in body["keys"] if key["status"] == "active"]


def _standin_bank_url(stderr: str) -> str:
    """Where `ecard serve` says it started the stand-in bank (no ECARD_BANK_URL on the embedded default)."""
    found = re.search(r"stand-in bank on (http://127\.0\.0\.1:\d+)", stderr)
    assert found, stderr[-2000:]
    return found.group(1)


def _passwords_printed(stderr: str) -> int:
    return stderr.count('"password"')


def _assert_ready(serving: Serving) -> None:
    ready = httpx.get(f"{serving.base}/readyz", timeout=5.0)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": "ok", "cache": "ok"}


def _operator_logs_in(serving: Serving, username: str, password: str, totp_uri: str) -> None:
    answer = httpx.post(
        f"{serving.base}/v1/admin/sessions",
        json={"username": username, "password": password, "totp": totp_now(totp_uri)},
        timeout=10.0,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["token"]


def _assert_all_stopped(data_dir: Path, pids: set[int]) -> None:
    assert all(gone(pid) for pid in pids), [pid for pid in pids if not gone(pid)]
    assert processes_for(data_dir) == []
    assert discover(data_dir) is None


def test_serve_starts_embedded_services_seeds_a_demo_shares_them_and_stops_on_sigterm(servers: Servers) -> None:
    data_dir = servers.data_dir
    serving = servers.start()

    _assert_ready(serving)
    assert len(_issuer_kids(serving)) == 1
    bank_url = _standin_bank_url(serving.stderr)
    assert httpx.get(f"{bank_url}/healthz", timeout=5.0).status_code == 200

    # The demo operator's password is printed once, with everything needed to try the service.
    stderr = serving.stderr
    assert _passwords_printed(stderr) == 1
    announced = stderr.index("Demo data seeded")
    demo, _ = json.JSONDecoder().raw_decode(stderr, stderr.index("{", announced))
    _operator_logs_in(serving, "demo-operator", demo["operator"]["password"], demo["operator"]["totp_uri"])

    # The demo clients' private keys are on disk for the owner only, and the service knows them.
    for name in ("merchant", "channel"):
        path = data_dir / "demo" / f"{name}.jwk.json"
        assert Path(demo[name]["private_jwk"]) == path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    merchant_jwk = json.loads((data_dir / "demo" / "merchant.jwk.json").read_text())
    assert merchant_jwk["kid"] == demo["merchant"]["key_id"]
    key, alg = load_private_jwk(merchant_jwk)
    body = json.dumps({"code": "EC1:NOT-A-CODE", "item_code": "wl-030"}).encode()
    url = f"{serving.base}/v1/verifications"
    headers = sign_request("POST", url, body, key, merchant_jwk["kid"], alg)
    answer = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=10.0)
    # past the signature check (the demo merchant is registered), refused for the code itself
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed_code"

    # Other commands given the same data folder find and use the running services.
    found = discover(data_dir)
    assert found is not None
    assert found.database_url.startswith("postgresql://")
    added = subprocess.run(
        [sys.executable, "-m", "ecard.cli", "operator", "add", "--username", "bob"],
        cwd=REPO,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    bob = json.loads(added.stdout)
    assert bob["username"] == "bob"
    _operator_logs_in(serving, "bob", bob["password"], bob["totp_uri"])
    assert discover(data_dir) == found, "the command must not have started or stopped services of its own"

    pids = server_pids(data_dir)
    assert len(processes_for(data_dir)) >= 2  # postgres and valkey, as the check below expects them
    code = servers.stop(serving, signal.SIGTERM)
    assert code in {0, 128 + signal.SIGTERM}, serving.stderr[-2000:]
    _assert_all_stopped(data_dir, pids)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{serving.base}/healthz", timeout=2.0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{bank_url}/healthz", timeout=2.0)


def test_serve_restarted_keeps_its_data_seeds_once_and_stops_on_sigint(servers: Servers) -> None:
    data_dir = servers.data_dir
    first = servers.start()
    kids = _issuer_kids(first)
    assert len(kids) == 1
    assert _passwords_printed(first.stderr) == 1
    pids = server_pids(data_dir)
    code = servers.stop(first, signal.SIGINT)
    assert code in {0, 128 + signal.SIGINT}, first.stderr[-2000:]
    _assert_all_stopped(data_dir, pids)

    second = servers.start()
    _assert_ready(second)
    assert _issuer_kids(second) == kids
    assert _passwords_printed(second.stderr) == 0
    assert "Demo data seeded" not in second.stderr
    pids = server_pids(data_dir)
    code = servers.stop(second, signal.SIGINT)
    assert code in {0, 128 + signal.SIGINT}, second.stderr[-2000:]
    _assert_all_stopped(data_dir, pids)

"""The stand-in bank as a real process, and a key-set server standing in for the issuer's request-keys endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ecard.federation import Audience, IssuerRequestKey
from ecard.kit.jwk import public_jwk, thumbprint
from tests.standins import StandinBank


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[StandinBank]:
    with StandinBank.running(tmp_path / "bank") as standin:
        yield standin


def request_key(issuer: str = "cq") -> IssuerRequestKey:
    """An issuer request key for the bank made here."""
    private = ed25519.Ed25519PrivateKey.generate()
    return IssuerRequestKey(issuer, Audience.BANK, thumbprint(public_jwk(private.public_key())), private)


def published(key: IssuerRequestKey, status: str = "active") -> dict[str, str]:
    """The key as `GET /v1/issuer/request-keys` publishes it."""
    jwk = public_jwk(key.private.public_key())
    return {**jwk, "kid": key.kid, "alg": "EdDSA", "use": "sig", "status": status, "audience": key.audience.value}


class _LoopbackServer:
    """A threaded HTTP server on a free loopback port, for the length of a `with` block."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _json_handler(answer: Callable[[], tuple[int, bytes]]) -> type[BaseHTTPRequestHandler]:
    """A handler that reads any request's body and sends `answer()` as JSON."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answer()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            return

    return Handler


class KeySetServer(_LoopbackServer):
    """Serves `document` as JSON at any path, on a loopback port; tests swap the document to rotate keys."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        super().__init__(_json_handler(self._serve))

    def _serve(self) -> tuple[int, bytes]:
        self.fetches += 1
        return 200, json.dumps(self.document).encode()

    @property
    def url(self) -> str:
        return f"{self.base}/v1/issuer/request-keys"


class AnsweringServer(_LoopbackServer):
    """A loopback server that answers every request with one status and body: a bank gone wrong."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(_json_handler(lambda: (status, body)))


@pytest.fixture
def issuer_key() -> IssuerRequestKey:
    return request_key()


@pytest.fixture
def key_set(issuer_key: IssuerRequestKey) -> Iterator[KeySetServer]:
    with KeySetServer({"issuer": issuer_key.issuer, "keys": [published(issuer_key)]}) as served:
        yield served


@pytest.fixture
def signed_bank(tmp_path: Path, key_set: KeySetServer) -> Iterator[StandinBank]:
    """The stand-in started with `--trust-keys` pointing at the key-set server."""
    with StandinBank.running(tmp_path / "signed-bank", trust_keys=key_set.url) as standin:
        yield standin

"""A bank that lies: it answers about our transfers as if they were other movements."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ecard.kit.metrics import REGISTRY


def mismatches(operation: str) -> float:
    """How many bank answers the service has alerted on as not matching, for one operation."""
    return REGISTRY.get_sample_value("ecard_bank_mismatches_total", {"operation": operation}) or 0.0


class LyingBank:
    """Answers every transfer asked about as a completed debit of 1 fen from another card (and any reversal as
    done), on a loopback port."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append(f"{self.command} {self.path}")
                found = re.search(r"/v1/transfers/([^/?]+)", self.path)
                asked = found.group(1) if found else str(json.loads(sent or b"{}").get("transfer_id"))
                status = "reversed" if self.path.endswith("/reverse") else "completed"
                body = json.dumps(
                    {
                        "transfer_id": asked,
                        "card_id": "crd_someone_else",
                        "direction": "debit",
                        "amount_fen": 1,
                        "memo": "",
                        "status": status,
                        "at": "2026-11-23T09:15:02Z",
                        "reversed_at": None,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[LyingBank]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

"""Merchant callback servers gone bad, on loopback ports: a huge answer, a drip, a hang, answers held back."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Self

HUGE_BYTES = 400 * 1024 * 1024
CHUNK = 64 * 1024


class HostileServer:
    """Reads each request whole, then answers as `mode` says:

    - `huge`: 200 with a 400 MB body, written as fast as the client takes it;
    - `drip`: one byte of an endless answer head every `drip_s`, each well inside a socket timeout;
    - `hang`: nothing at all until the server stops;
    - `hold`: 200, once `release()` is called (the requests wait meanwhile: a slow merchant).
    """

    def __init__(self, mode: str, drip_s: float = 0.5) -> None:
        self.mode = mode
        self.drip_s = drip_s
        self.requests = 0
        self.open = 0
        self.most_open = 0
        self.sent = 0
        self.finished = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._stopped = threading.Event()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/notify"

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if not _read_request(sock):
                return
            with self._lock:
                self.requests += 1
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            try:
                getattr(self, f"_{self.mode}")(sock)
            finally:
                with self._lock:
                    self.open -= 1
        with self._lock:
            self.finished += 1

    def _huge(self, sock: socket.socket) -> None:
        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BYTES}\r\n\r\n".encode())
        zeros = bytes(CHUNK)
        for _ in range(HUGE_BYTES // CHUNK):
            sock.sendall(zeros)
            with self._lock:
                self.sent += CHUNK

    def _drip(self, sock: socket.socket) -> None:
        for byte in _endless_head():
            if self._stopped.wait(self.drip_s):
                return
            sock.sendall(byte)
            with self._lock:
                self.sent += 1

    def _hang(self, _: socket.socket) -> None:
        self._stopped.wait()

    def _hold(self, sock: socket.socket) -> None:
        self._released.wait()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _read_request(sock: socket.socket) -> bool:
    """The whole request (head, and a body of Content-Length); False when the client went away first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        body += chunk
    return True


def _endless_head() -> Iterator[bytes]:
    yield from (bytes([b]) for b in b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while True:
        yield b"a"

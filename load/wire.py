"""A raw HTTP/1.1 keep-alive client: pre-built request bytes out, status and body back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_CONTENT_LENGTH = b"\r\ncontent-length:"


def build_request(method: str, path: str, host: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 request as the bytes that go on the wire."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def content_length(head: bytes) -> int:
    """The Content-Length of a response head; the service always sends one."""
    at = head.lower().find(_CONTENT_LENGTH)
    if at < 0:
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    end = head.index(b"\r\n", at + 2)
    return int(head[at + len(_CONTENT_LENGTH) : end])


class Connection:
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and read its response: (status, body)."""
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = content_length(head)
        body = await self._reader.readexactly(length) if length else b""
        return int(head[9:12]), body

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

"""Where merchant callbacks may go: public https destinations, checked when a bill names one and again, after
resolving the name, at every delivery (a name that resolves to a private address is refused: DNS rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ecard.kit.refusal import Refusal

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name resolves to (the system resolver unless a test gives another)
Resolver = Callable[[str, int], Awaitable[list[str]]]


class DestinationRefused(Exception):  # noqa: N818 - a refusal of a destination, not an error of ours
    """The callback's destination is not (or no longer) a public address; nothing was sent."""


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: the checked address, and the name the request is for (Host, TLS SNI)."""

    url: str
    host_header: str
    sni_hostname: str | None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _address(host: str) -> Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


class Destinations:
    """The rule for `notify_url`: https to a public address; loopback (and http) only when allowed, for stand-ins
    and tests (`ECARD_CALLBACK_ALLOW_LOOPBACK=1`). Private, link-local, multicast and reserved addresses never."""

    def __init__(self, *, allow_loopback: bool = False, resolver: Resolver = system_resolver) -> None:
        self._allow_loopback = allow_loopback
        self._resolve = resolver

    def _allowed(self, address: Address) -> bool:
        if address.is_loopback:
            return self._allow_loopback
        return address.is_global and not address.is_multicast

    def check(self, url: str) -> None:
        """Refuse a `notify_url` that can never be a public https destination (400 naming the field)."""
        try:
            self._parse(url)
        except DestinationRefused as exc:
            raise Refusal("invalid_request", f"notify_url: {exc}", extra={"fields": ["notify_url"]}) from exc

    def _parse(self, url: str) -> tuple[str, str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise DestinationRefused("not a valid URL") from exc
        host = parts.hostname
        if not host or parts.username is not None or parts.password is not None:
            raise DestinationRefused("must name a host, without credentials")
        if parts.fragment:
            raise DestinationRefused("must have no fragment")
        if parts.scheme != "https" and not (parts.scheme == "http" and self._allow_loopback):
            raise DestinationRefused("must be an https:// URL")
        address = _address(host)
        if address is not None and not self._allowed(address):
            raise DestinationRefused("must not point at a loopback, private, link-local or multicast address")
        if address is None and _loopback_name(host) and not self._allow_loopback:
            raise DestinationRefused("must not point at this host (localhost)")
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)

    async def target(self, url: str) -> Target:
        """Where to connect for this delivery, after the name is resolved and every address it has is checked."""
        scheme, host, port = self._parse(url)
        literal = _address(host)
        if literal is not None:
            return Target(url=url, host_header=_authority(url), sni_hostname=None)
        try:
            resolved = await self._resolve(host, port)
        except OSError as exc:
            raise DestinationRefused("the name does not resolve") from exc
        addresses = [a for a in map(_address, resolved) if a is not None]
        if not addresses:
            raise DestinationRefused("the name does not resolve")
        if not all(self._allowed(a) for a in addresses):
            raise DestinationRefused("the name resolves to a loopback, private, link-local or multicast address")
        chosen = addresses[0]
        literal_host = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        parts = urlsplit(url)
        pinned = parts._replace(netloc=f"{literal_host}:{port}").geturl()
        return Target(url=pinned, host_header=_authority(url), sni_hostname=host if scheme == "https" else None)


def _authority(url: str) -> str:
    """The URL's host[:port] as the Host header carries it (no credentials: the check refuses them)."""
    return urlsplit(url).netloc

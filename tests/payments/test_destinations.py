"""notify_url goes to public https destinations only: refused at bill creation, and again at delivery after the
name is resolved (a name that resolves to a private address, as in DNS rebinding, gets nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ecard.config import Settings
from ecard.federation import Audience
from ecard.payments import CallbackPolicy, Callbacks, Destinations
from ecard.payments.destinations import DestinationRefused, Resolver
from ecard.payments.models import LeasedEvent
from tests.payments.conftest import Shop
from tests.support import World, problem


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """As in production: no loopback, no http."""
    return dataclasses.replace(settings, callback_allow_loopback=False)


def resolving_to(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def test_a_bill_names_a_public_https_destination(world: World, shop: Shop) -> None:
    merchant = await shop.merchant()
    for url in [
        "https://pay.shop.example/ecard/notify?x=1",
        "https://8.8.4.4:8443/notify",
        "https://[2606:4700::1]/n",
    ]:
        answer = await shop.create(merchant, shop.bill_body(notify_url=url))
        assert answer.status_code == 201, (url, answer.text)


@pytest.mark.parametrize(
    "url",
    [
        "http://pay.shop.example/notify",
        "https://127.0.0.1/notify",
        "https://127.8.9.10:8443/notify",
        "https://localhost/notify",
        "https://callbacks.localhost/notify",
        "https://[::1]/notify",
        "https://[::ffff:127.0.0.1]/notify",
        "https://10.1.2.3/notify",
        "https://172.16.0.9/notify",
        "https://192.168.1.20/notify",
        "https://100.64.0.1/notify",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/notify",
        "https://[fd00::5]/notify",
        "https://224.0.0.251/notify",
        "https://[ff02::1]/notify",
        "https://0.0.0.0/notify",
        "https://user:secret@pay.shop.example/notify",
        "https://pay.shop.example:99999/notify",
    ],
)
async def test_a_bill_naming_a_private_or_plain_http_destination_is_refused(world: World, shop: Shop, url: str) -> None:
    merchant = await shop.merchant()
    answer = await shop.create(merchant, shop.bill_body(notify_url=url))
    assert problem(answer) == (400, "invalid_request"), url
    assert answer.json()["fields"] == ["notify_url"]
    assert "secret" not in answer.text


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.0.0.5"],
        ["169.254.169.254"],
        ["::1"],
        ["fe80::1%eth0"],
        ["::ffff:192.168.0.1"],
        # one public and one private answer is a rebinding attempt as well
        ["8.8.4.4", "192.168.0.1"],
    ],
)
async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(addresses: list[str]) -> None:
    destinations = Destinations(resolver=resolving_to(*addresses))
    destinations.check("https://rebind.example/notify")
    with pytest.raises(DestinationRefused):
        await destinations.target("https://rebind.example/notify")


async def test_delivery_connects_to_the_address_it_checked_under_the_name_it_was_given() -> None:
    destinations = Destinations(resolver=resolving_to("8.8.4.4", "2001:4860::8888"))
    target = await destinations.target("https://pay.shop.example/ecard/notify?x=1")
    assert target.url == "https://8.8.4.4:443/ecard/notify?x=1"
    assert target.host_header == "pay.shop.example"
    assert target.sni_hostname == "pay.shop.example"


@pytest.fixture
def listener() -> Iterator[list[int]]:
    """A TCP port on loopback that counts who connects to it (nothing should)."""
    connections: list[int] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            connections.append(1)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    connections.append(sock.getsockname()[1])
    try:
        yield connections
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


async def test_a_rebound_name_gets_no_callback(world: World, shop: Shop, listener: list[int]) -> None:
    port = listener.pop()
    merchant = await shop.merchant()
    device = await shop.payer()
    bill = await shop.bill(merchant, 1_000, notify_url=f"https://rebind.example:{port}/notify")
    assert (await shop.pay(device, bill["bill_id"])).status_code == 200
    # a deliverer whose resolver says the name is this host now, as a rebinding name server would
    rebound = Callbacks(
        world.app.state.pool,
        world.clock,
        world.app.state.request_keys.signer(Audience.CALLBACK),
        CallbackPolicy(base_delay_s=0.01, window_s=86_400, poll_s=0.01, deadline_s=2),
        Destinations(resolver=resolving_to("127.0.0.1")),
    )
    try:
        # the service's own deliverer may lease the event first; it is due again an hour later at the most
        deadline = asyncio.get_running_loop().time() + 20
        while await rebound.deliver_due() == 0:
            assert asyncio.get_running_loop().time() < deadline
            world.clock.advance(3_601)
            await asyncio.sleep(0.05)
    finally:
        await rebound.aclose()
    answer = await world.signed(merchant, "GET", f"/v1/bills/{bill['bill_id']}/notifications")
    log = answer.json()["items"]
    assert log
    assert {a["error"] for a in log} == {"destination_refused"}
    assert listener == []


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[tuple[int, list[str | None]]]:
    """A TLS server on loopback with a self-signed certificate, noting the server name each client asks for."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pay.shop.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    asked: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.sni_callback = lambda _sock, server_name, _ctx: asked.append(server_name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError, ssl.SSLError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], asked
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


async def test_a_pinned_delivery_asks_tls_for_the_name_not_the_address(
    world: World, tls_listener: tuple[int, list[str | None]]
) -> None:
    port, asked = tls_listener
    callbacks = Callbacks(
        world.app.state.pool,
        world.clock,
        world.app.state.request_keys.signer(Audience.CALLBACK),
        CallbackPolicy(base_delay_s=0.01, window_s=86_400, poll_s=0.01, deadline_s=5),
        Destinations(allow_loopback=True, resolver=resolving_to("127.0.0.1")),
    )
    event = LeasedEvent(
        event_id="evt_tls",
        merchant_id="mch_tls",
        notify_url=f"https://pay.shop.example:{port}/notify",
        body=b"{}",
        attempts=0,
        created_at=dt.datetime.now(dt.UTC),
        lease_token="lse_tls",
    )
    try:
        status, error = await callbacks._post(event)
    finally:
        await callbacks.aclose()
    # it reached the checked address, asked for the name (whose certificate, self-signed here, it then refused)
    assert asked == ["pay.shop.example"]
    assert status is None
    assert error == "ConnectError"

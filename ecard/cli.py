"""The `ecard` command: the service, its database, its keys, and tools for trying the API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ecard.config import Settings
from ecard.kit.crypto import b64u, b64u_decode

if TYPE_CHECKING:
    import aiohttp
    import asyncpg

    from ecard.bank import HttpBank


@contextlib.contextmanager
def _services(settings: Settings, *, for_serve: bool = False) -> Iterator[Settings]:
    """Settings with database and cache URLs: the configured ones, a running `ecard serve`'s, or embedded ones."""
    if settings.database_url and settings.redis_url:
        yield settings
        return
    from ecard.kit.embedded import EmbeddedServices, discover  # noqa: PLC0415 - only the embedded default needs it

    if not for_serve:
        found = discover(settings.data_dir)
        if found is not None:
            yield dataclasses.replace(settings, database_url=found.database_url, redis_url=found.redis_url)
            return
    embedded = EmbeddedServices(settings.data_dir)
    urls = embedded.start()
    try:
        yield dataclasses.replace(settings, database_url=urls.database_url, redis_url=urls.redis_url)
    finally:
        embedded.stop()


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415

    from ecard.ops import share_metrics  # noqa: PLC0415

    # before anything imports prometheus_client: every worker then writes to the same folder, /metrics adds it up
    share_metrics(settings.data_dir)
    from ecard.seed import bootstrap, seed_demo  # noqa: PLC0415

    embedded = not (settings.database_url and settings.redis_url)
    # SIGTERM must unwind like Ctrl-C so that the embedded services are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _raise_exit)
    with _services(settings, for_serve=True) as live, contextlib.ExitStack() as beside:
        assert live.database_url
        assert live.redis_url
        asyncio.run(bootstrap(live))
        if embedded:
            demo = asyncio.run(seed_demo(live))
            if demo is not None:
                print("Demo data seeded. The operator password is shown this once:", file=sys.stderr)
                print(json.dumps(demo, ensure_ascii=False, indent=2), file=sys.stderr)
        os.environ["ECARD_DATABASE_URL"] = live.database_url
        os.environ["ECARD_REDIS_URL"] = live.redis_url
        os.environ["ECARD_DATA_DIR"] = str(live.data_dir.resolve())
        # the OpenID Connect issuer is where portals reach this process, unless told otherwise
        os.environ.setdefault("ECARD_PUBLIC_URL", f"http://{args.host}:{args.port}")
        if embedded and not live.bank_url:
            os.environ["ECARD_BANK_URL"] = beside.enter_context(_standin_bank_beside(live, args.host, args.port))
        config = uvicorn.Config(
            "ecard.app:create_app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
        # Listening before the app starts, so that once the line below is printed a connection is never refused:
        # it waits in the backlog until the app (each worker's, with --workers N) is up and answers it.
        sock = config.bind_socket()
        sock.listen(config.backlog)
        print(f"ecard serving on http://{args.host}:{args.port} (issuer {live.issuer_id})", file=sys.stderr)
        if args.workers > 1:
            from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

            Multiprocess(config, sockets=[sock]).run()
            return 0
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        if not server.started:
            return 3  # uvicorn's own exit status for an app that failed to start
    return 0


@contextlib.contextmanager
def _standin_bank_beside(live: Settings, host: str, port: int) -> Iterator[str]:
    """The demo's bank: the stand-in on a port of its own, trusting this instance's request keys; its URL."""
    from ecard.bank.embedded import running_standin  # noqa: PLC0415

    own = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - compared, not bound
    trust = f"http://{own}:{port}/v1/issuer/request-keys"
    folder = live.data_dir.resolve()
    with running_standin(folder / "standin-bank", trust, folder / "standin-bank.log") as standin:
        if standin.moved_from is not None:
            print(
                f"port {standin.moved_from}, the stand-in bank's last time, is taken: it is on {standin.port} now",
                file=sys.stderr,
            )
        print(f"stand-in bank on {standin.url} (ledger in {folder / 'standin-bank'})", file=sys.stderr)
        yield standin.url


def cmd_standin_yukuai(args: argparse.Namespace, _: Settings) -> int:
    from ecard.yukuai.standin import serve  # noqa: PLC0415

    checks = f"verifying signatures with {args.trust_keys}" if args.trust_keys else "accepting UNSIGNED requests"
    print(f"stand-in 渝快办 ({args.issuer}) on http://{args.host}:{args.port}, {checks}", file=sys.stderr)
    serve(args.host, args.port, args.trust_keys, args.code_ttl, args.link_token_ttl, args.issuer, "YKM:")
    return 0


def cmd_standin_bank(args: argparse.Namespace, settings: Settings) -> int:
    from ecard.bank.standin import serve  # noqa: PLC0415

    data = Path(args.data) if args.data else settings.data_dir / "standin-bank"
    checks = f"verifying signatures with {args.trust_keys}" if args.trust_keys else "accepting UNSIGNED requests"
    print(f"stand-in bank on http://{args.host}:{args.port}, ledger in {data}, {checks}", file=sys.stderr)
    serve(args.host, args.port, data, args.trust_keys)
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    from ecard.seed import bootstrap  # noqa: PLC0415

    with _services(settings) as live:
        applied = asyncio.run(bootstrap(live))
    print(json.dumps({"applied": applied}))
    return 0


def cmd_operator_add(args: argparse.Namespace, settings: Settings) -> int:
    from ecard.kit.refusal import Refusal  # noqa: PLC0415

    async def run(live: Settings) -> dict[str, str]:
        from ecard.kit.clock import SystemClock  # noqa: PLC0415
        from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415
        from ecard.kit.infra import connections  # noqa: PLC0415
        from ecard.operators import Operators  # noqa: PLC0415

        assert live.database_url
        assert live.redis_url
        async with connections(live.database_url, live.redis_url) as (pool, redis):
            keys = Keys.from_master(load_master_key(live))
            ops = Operators(pool, redis, keys, SystemClock(), live.redis_prefix, live.session_ttl_s)
            password, uri = await ops.add(args.username, args.password)
        return {"username": args.username, "password": password, "totp_uri": uri}

    with _services(settings) as live:
        from ecard.seed import bootstrap  # noqa: PLC0415

        asyncio.run(bootstrap(live))
        try:
            print(json.dumps(asyncio.run(run(live))))
        except Refusal as refusal:
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}), file=sys.stderr)
            return 2
    return 0


def cmd_catalog_import(args: argparse.Namespace, settings: Settings) -> int:
    """Apply a catalog CSV as one new version, or, when any row is wrong, nothing: every bad line is printed."""
    from ecard.kit.refusal import Refusal  # noqa: PLC0415

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        detail = f"{path.name}: cannot read a UTF-8 file: {exc}"
        print(json.dumps({"error": "invalid_request", "detail": detail}, ensure_ascii=False), file=sys.stderr)
        return 2

    async def run(live: Settings) -> object:
        from ecard.catalog import Catalog  # noqa: PLC0415
        from ecard.kit.infra import create_pool  # noqa: PLC0415

        assert live.database_url
        pool = await create_pool(live.database_url, 1, 1)
        try:
            imported = await Catalog(pool).import_csv(path.name, text)
        finally:
            await pool.close()
        return {"version": imported.version, "items": imported.items}

    with _services(settings) as live:
        from ecard.seed import bootstrap  # noqa: PLC0415

        asyncio.run(bootstrap(live))
        try:
            print(json.dumps(asyncio.run(run(live))))
        except Refusal as refusal:
            errors = refusal.extra.get("errors", [])
            for error in errors:
                print(error, file=sys.stderr)
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}, ensure_ascii=False), file=sys.stderr)
            return 2
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from ecard.kit.refusal import Refusal  # noqa: PLC0415

    async def run(live: Settings) -> object:
        from ecard.codes import KeyRing  # noqa: PLC0415
        from ecard.kit.clock import SystemClock  # noqa: PLC0415
        from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415
        from ecard.kit.infra import connections  # noqa: PLC0415

        assert live.database_url
        assert live.redis_url
        async with connections(live.database_url, live.redis_url) as (pool, redis):
            ring = KeyRing.from_settings(pool, redis, Keys.from_master(load_master_key(live)), SystemClock(), live)
            await ring.refresh()
            # audited as the account that ran the command on this host
            actor = f"cli:{getpass.getuser()}"
            if args.action == "rotate":
                return {"rotated_to": b64u(await ring.rotate(actor)), "keys": ring.published()}
            if args.action == "revoke":
                try:
                    kid = b64u_decode(args.kid)
                except ValueError as exc:
                    raise Refusal("invalid_request", "KID must be base64url, as published") from exc
                await ring.revoke(kid, actor)
                return {"revoked": args.kid, "keys": ring.published()}
            if args.action == "new-epoch":
                return {"card_ref_epoch": await ring.start_epoch(actor)}
            return {"issuer": live.issuer_id, "keys": ring.published(), "card_ref_epoch": ring.card_ref_epoch}

    with _services(settings) as live:
        try:
            print(json.dumps(asyncio.run(run(live)), indent=2))
        except Refusal as refusal:
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}), file=sys.stderr)
            return 2
    return 0


def cmd_partners(args: argparse.Namespace, settings: Settings) -> int:
    """The trust list: `list`, `add` (the partner's request key fetched from its base URL unless given), `refresh`."""
    import msgspec  # noqa: PLC0415

    from ecard.kit.refusal import Refusal  # noqa: PLC0415

    given_key = (
        json.loads(Path(args.public_key).read_text(encoding="utf-8")) if getattr(args, "public_key", None) else None
    )

    async def run(live: Settings) -> object:
        from ecard.clients import ClientDirectory  # noqa: PLC0415
        from ecard.federation import Audience, Federation, FederationSettings, IssuerRequestKeys  # noqa: PLC0415
        from ecard.kit.clock import SystemClock  # noqa: PLC0415
        from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415
        from ecard.kit.infra import connections  # noqa: PLC0415
        from ecard.kit.peers import session as peer_session  # noqa: PLC0415
        from ecard.kit.signing import authority  # noqa: PLC0415

        assert live.database_url
        assert live.redis_url
        async with connections(live.database_url, live.redis_url) as (pool, _), peer_session() as http:
            keys = Keys.from_master(load_master_key(live))
            request_keys = await IssuerRequestKeys.load(pool, keys, live.issuer_id)
            federation = Federation(
                pool,
                ClientDirectory(pool, keys),
                request_keys.signer(Audience.FEDERATION),
                SystemClock(),
                FederationSettings(
                    live.issuer_id,
                    live.partner_timeout_ms / 1000,
                    0,
                    live.partner_keys_max_age_s,
                    3,
                    5,
                    frozenset({authority(live.public_url)}),
                ),
                http,
            )
            if args.action == "add":
                public_key = given_key or await _partner_request_key(http, args.base_url, args.issuer)
                made = await federation.register("cli", args.issuer, args.name, args.base_url, public_key, args.region)
                return msgspec.to_builtins(made)
            if args.action == "refresh":
                await federation.refresh_keys(args.issuer)
            return {"issuer": live.issuer_id, "partners": msgspec.to_builtins(await federation.list())}

    with _services(settings) as live:
        try:
            print(json.dumps(asyncio.run(run(live)), indent=2, ensure_ascii=False))
        except Refusal as refusal:
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}), file=sys.stderr)
            return 2
    return 0


async def _partner_request_key(http: aiohttp.ClientSession, base_url: str, issuer: str) -> dict[str, str]:
    """The partner's request-signing key as it publishes it at /v1/issuer/request-keys."""
    from ecard.kit import peers  # noqa: PLC0415
    from ecard.kit.refusal import Refusal  # noqa: PLC0415

    insecure = peers.insecure(base_url)
    if insecure is not None:
        raise Refusal("invalid_request", f"base_url: {insecure}", extra={"fields": ["base_url"]})
    try:
        answer = await peers.call(http, "GET", f"{base_url.rstrip('/')}/v1/issuer/request-keys", b"", {}, 5.0)
    except peers.PeerUnreachableError as exc:
        raise Refusal("issuer_unavailable", f"{base_url} did not publish its request keys") from exc
    body = answer.body if isinstance(answer.body, dict) else {}
    if body.get("issuer") != issuer:
        raise Refusal("invalid_request", f"{base_url} is issuer {body.get('issuer')!r}, not {issuer!r}")
    # a partner's keys for partners (an older partner publishes only those, without an audience)
    active = [
        k
        for k in body.get("keys", [])
        if k.get("status", "active") == "active" and k.get("audience", "federation") == "federation"
    ]
    if not active:
        raise Refusal("invalid_request", f"{base_url} publishes no active request key for partners")
    return {k: str(v) for k, v in active[0].items() if k in {"kty", "crv", "x", "y", "kid"}}


def cmd_keygen(args: argparse.Namespace, _: Settings) -> int:
    """A client key pair for trying the API: the private JWK goes to a 0600 file, the public one to stdout."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: PLC0415

    from ecard.kit.crypto import write_private_file  # noqa: PLC0415
    from ecard.kit.jwk import private_jwk, public_jwk  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1()) if args.curve == "p256" else ed25519.Ed25519PrivateKey.generate()
    write_private_file(Path(args.out), json.dumps(private_jwk(key)).encode())
    print(json.dumps(public_jwk(key.public_key())))
    return 0


def _request_body(given: str) -> bytes:
    """`ecard call`'s body: the text itself, `@FILE` for a file's bytes, `-` for standard input."""
    if given == "-":
        return sys.stdin.buffer.read()
    if given.startswith("@"):
        return Path(given[1:]).read_bytes()
    return given.encode()


def cmd_call(args: argparse.Namespace, _: Settings) -> int:
    """Sign a request as API.md asks and send it: curl for RFC 9421 clients. Body on stdout, status on stderr."""
    import httpx  # noqa: PLC0415

    from ecard.kit.jwk import load_private_jwk  # noqa: PLC0415
    from ecard.kit.signing import sign_request  # noqa: PLC0415

    jwk = json.loads(Path(args.key).read_text())
    key, alg = load_private_jwk(jwk)
    keyid = args.keyid or jwk.get("kid")
    if not keyid:
        print('no key id: pass --keyid or put "kid" in the key file', file=sys.stderr)
        return 2
    try:
        body = _request_body(args.body)
    except OSError as exc:
        print(f"cannot read the body: {exc}", file=sys.stderr)
        return 2
    headers = sign_request(args.method, args.url, body, key, keyid, alg)
    headers["Accept"] = args.accept
    if body:
        headers["Content-Type"] = "application/json"
    answer = httpx.request(args.method.upper(), args.url, content=body, headers=headers, timeout=10)
    status_line = f"{answer.http_version} {answer.status_code} {answer.reason_phrase}"
    print(status_line, file=sys.stderr)
    out = sys.stdout.buffer
    if args.include:
        head = [status_line, *(f"{name}: {value}" for name, value in answer.headers.items()), "", ""]
        out.write("\r\n".join(head).encode())
    if args.out:
        Path(args.out).write_bytes(answer.content)
    else:
        out.write(answer.content)
        if answer.content and not answer.content.endswith(b"\n") and out.isatty():
            out.write(b"\n")
    out.flush()
    return 0 if answer.is_success else 1


def cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    """`ledger check`: Σ = 0 overall and per transfer, every bill as its entries say; `ledger reconcile`: the day
    against the bank. Both exit 1 and name what is wrong when something is."""
    from datetime import date  # noqa: PLC0415

    from ecard.disbursements import check as check_batches  # noqa: PLC0415
    from ecard.kit.infra import create_pool  # noqa: PLC0415
    from ecard.payments import check, reconcile  # noqa: PLC0415

    day = None
    if args.action == "reconcile":
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            print(json.dumps({"error": "invalid_request", "detail": "--date must be YYYY-MM-DD"}), file=sys.stderr)
            return 2

    async def run(live: Settings) -> dict[str, object]:
        assert live.database_url
        pool = await create_pool(live.database_url, 1, 2)
        try:
            if day is None:
                problems = await check(pool) + await check_batches(pool)
                return {"clean": not problems, "problems": problems}
            async with _bank(live, pool) as bank:
                return (await reconcile(pool, bank, day)).as_dict()
        finally:
            await pool.close()

    with _services(settings) as live:
        if args.action == "reconcile" and not live.bank_url:
            print(json.dumps({"error": "bank_unavailable", "detail": "ECARD_BANK_URL is not set"}), file=sys.stderr)
            return 2
        found = asyncio.run(run(live))
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 0 if found["clean"] else 1


@contextlib.asynccontextmanager
async def _bank(live: Settings, pool: asyncpg.Pool) -> AsyncIterator[HttpBank]:
    """The bank adapter as `ecard serve` builds it: at ECARD_BANK_URL, signing with the issuer request key."""
    from ecard.bank import HttpBank  # noqa: PLC0415
    from ecard.federation import Audience, IssuerRequestKeys  # noqa: PLC0415
    from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415

    assert live.bank_url
    request_keys = await IssuerRequestKeys.load(pool, Keys.from_master(load_master_key(live)), live.issuer_id)
    bank = HttpBank(live.bank_url, request_keys.signer(Audience.BANK), live.bank_timeout_s)
    try:
        yield bank
    finally:
        await bank.aclose()


def cmd_payments_recover(_: argparse.Namespace, settings: Settings) -> int:
    """One recovery round now: settles every unfinished payment and refund that its own request has let go of (its
    lease ran out); an answer from the bank that does not match is listed under `mismatched` (exit 1)."""
    from ecard.kit.clock import SystemClock  # noqa: PLC0415
    from ecard.kit.infra import create_pool  # noqa: PLC0415
    from ecard.payments import Recovery  # noqa: PLC0415

    async def run(live: Settings) -> dict[str, list[str]]:
        assert live.database_url
        pool = await create_pool(live.database_url, 1, 2)
        try:
            async with _bank(live, pool) as bank:
                recovery = Recovery(pool, SystemClock(), bank, live.payment_recovery_grace_s)
                return (await recovery.run_once()).as_dict()
        finally:
            await pool.close()

    with _services(settings) as live:
        if not live.bank_url:
            print(json.dumps({"error": "bank_unavailable", "detail": "ECARD_BANK_URL is not set"}), file=sys.stderr)
            return 2
        done = asyncio.run(run(live))
    print(json.dumps(done, indent=2))
    return 1 if done["left"] or done["mismatched"] else 0


def cmd_portals(args: argparse.Namespace, settings: Settings) -> int:
    """Portals (OpenID Connect clients): `add`, `list`, and `rotate-key` for the id_token signing key."""
    import msgspec  # noqa: PLC0415

    from ecard.kit.refusal import Refusal  # noqa: PLC0415

    given = json.loads(Path(args.jwks).read_text(encoding="utf-8")) if getattr(args, "jwks", None) else {}

    async def run(live: Settings) -> object:
        from ecard.catalog import Catalog  # noqa: PLC0415
        from ecard.kit.clock import SystemClock  # noqa: PLC0415
        from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415
        from ecard.kit.infra import create_pool  # noqa: PLC0415
        from ecard.portal import NewPortal, Portals, SigningKeys  # noqa: PLC0415

        assert live.database_url
        pool = await create_pool(live.database_url, 1, 2)
        try:
            portals = Portals(pool, Catalog(pool))
            if args.action == "add":
                new = NewPortal(
                    name=args.name,
                    redirect_uris=args.redirect_uri,
                    jwks=given if "keys" in given else {"keys": [given]},
                    claims=[c for c in args.claims.split(",") if c],
                    allowed_items=[i for i in args.items.split(",") if i],
                )
                return msgspec.to_builtins(await portals.register("cli", new))
            if args.action == "rotate-key":
                signing = SigningKeys(pool, Keys.from_master(load_master_key(live)), SystemClock())
                return {"rotated_to": await signing.rotate("cli"), **await signing.jwks()}
            return {"portals": msgspec.to_builtins(await portals.listing())}
        finally:
            await pool.close()

    with _services(settings) as live:
        from ecard.seed import bootstrap  # noqa: PLC0415

        asyncio.run(bootstrap(live))
        try:
            print(json.dumps(asyncio.run(run(live)), indent=2, ensure_ascii=False))
        except Refusal as refusal:
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}, ensure_ascii=False), file=sys.stderr)
            return 2
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Check the audit chain with the master key: exit 0 when intact, 1 naming the first entry that does not chain."""
    import msgspec  # noqa: PLC0415

    from ecard.kit.audit import ChainHead, verify_chain  # noqa: PLC0415

    try:
        anchor = ChainHead.parse(args.anchor) if args.anchor else None
    except ValueError as exc:
        print(json.dumps({"error": "invalid_request", "detail": str(exc)}), file=sys.stderr)
        return 2

    async def run(live: Settings) -> dict[str, object]:
        from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415
        from ecard.kit.infra import create_pool  # noqa: PLC0415

        assert live.database_url
        pool = await create_pool(live.database_url, 1, 1)
        try:
            check = await verify_chain(pool, Keys.from_master(load_master_key(live)).audit_key, anchor)
        finally:
            await pool.close()
        report: dict[str, object] = msgspec.to_builtins(check)
        return {**report, "head": check.head.text() if check.head else None}

    with _services(settings) as live:
        report = asyncio.run(run(live))
    print(json.dumps(report, indent=2))
    return 0 if report["intact"] else 1


def cmd_partitions(args: argparse.Namespace, settings: Settings) -> int:
    """`partitions list`, `ensure` (this month and the next ones made now) and `retain` (old months archived to
    files, checked and dropped), as docs/partitions.md says."""
    import msgspec  # noqa: PLC0415

    from ecard.kit.clock import SystemClock  # noqa: PLC0415
    from ecard.kit.infra import create_pool  # noqa: PLC0415
    from ecard.partitions import Partitions  # noqa: PLC0415

    async def run(live: Settings) -> object:
        assert live.database_url
        pool = await create_pool(live.database_url, 1, 2)
        try:
            keeper = Partitions(pool, SystemClock(), live.partitions_ahead_months)
            if args.action == "ensure":
                return {"made": await keeper.ensure()}
            if args.action == "retain":
                archive = Path(args.archive_dir) if args.archive_dir else live.data_dir / "archive"
                # audited as the account that ran the command on this host
                actor = f"cli:{getpass.getuser()}"
                return {"archived": await keeper.retain(actor, args.table, args.older_than, archive)}
            return {"partitions": await keeper.partitions()}
        finally:
            await pool.close()

    with _services(settings) as live:
        try:
            found = asyncio.run(run(live))
        except ValueError as exc:
            print(json.dumps({"error": "invalid_request", "detail": str(exc)}), file=sys.stderr)
            return 2
    print(json.dumps(msgspec.to_builtins(found), indent=2, ensure_ascii=False))
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, except where there is none to show (required, or unset)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in {None, False, "", argparse.SUPPRESS}:
            return action.help
        return super()._get_help_string(action)


def _commands(
    parser: argparse.ArgumentParser, dest: str, title: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Subcommands whose own help is formatted like their parent's."""
    return parser.add_subparsers(dest=dest, required=True, title=title, parser_class=_SubParser)


class _SubParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecard",
        description=__doc__,
        formatter_class=_HelpFormatter,
        epilog="`ecard COMMAND --help` tells more about each command.",
    )
    sub = _commands(parser, "command", "commands")

    serve = sub.add_parser(
        "serve",
        help="run the service (embedded PostgreSQL and Valkey when none is configured)",
        description="Run the service. Without ECARD_DATABASE_URL and ECARD_REDIS_URL it starts a private PostgreSQL "
        "and Valkey under ECARD_DATA_DIR, seeds demo data once and a stand-in bank beside itself.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser(
        "migrate",
        help="apply migrations, seed the catalog, make sure an issuer key exists (idempotent)",
        description="Apply the numbered SQL migrations not yet applied, seed the catalog and make sure an issuer "
        "key exists. Safe to run from many hosts at once.",
    ).set_defaults(func=cmd_migrate)

    operator = sub.add_parser("operator", help="operator accounts")
    operator_sub = _commands(operator, "action", "actions")
    add = operator_sub.add_parser("add", help="create an operator; prints its password and TOTP URI once")
    add.add_argument("--username", required=True, help="the operator's login name")
    add.add_argument("--password", default=None, help="the password to set (default: a generated one, printed)")
    add.set_defaults(func=cmd_operator_add)

    catalog = sub.add_parser("catalog", help="the catalog of card uses")
    catalog_sub = _commands(catalog, "action", "actions")
    import_ = catalog_sub.add_parser(
        "import", help="apply a CSV with the columns of wulong-2025.csv as one new version (all rows or none)"
    )
    import_.add_argument("file", help="the CSV file; optional columns regions, effective_from, effective_to")
    import_.set_defaults(func=cmd_catalog_import)

    keys = sub.add_parser("keys", help="issuer code-signing keys (keys/README.md)")
    keys_sub = _commands(keys, "action", "actions")
    keys_sub.add_parser("list", help="the published keys").set_defaults(func=cmd_keys)
    keys_sub.add_parser(
        "rotate", help="add a new active key; the old one verifies until its codes expire"
    ).set_defaults(func=cmd_keys)
    revoke = keys_sub.add_parser(
        "revoke", help="refuse a key's codes at once (key_revoked)", usage="ecard keys revoke [-h] -- KID"
    )
    revoke.add_argument("kid", help="the key's kid as published (base64url; write `-- KID`, as it may begin with -)")
    revoke.set_defaults(func=cmd_keys)
    keys_sub.add_parser(
        "new-epoch", help="start a new card-reference key epoch; codes of the previous one open until they expire"
    ).set_defaults(func=cmd_keys)

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = _commands(audit, "action", "actions")
    verify = audit_sub.add_parser(
        "verify", help="check the audit chain's seals (exit 0 intact; 1 naming the first entry that does not chain)"
    )
    verify.add_argument(
        "--anchor", default=None, help="a head printed earlier (SEQ:MAC), kept outside the database: must still chain"
    )
    verify.set_defaults(func=cmd_audit_verify)

    partitions = sub.add_parser("partitions", help="monthly partitions of the append-only tables (docs/partitions.md)")
    partitions_sub = _commands(partitions, "action", "actions")
    partitions_sub.add_parser("list", help="every partition, and months detached but not archived yet").set_defaults(
        func=cmd_partitions
    )
    partitions_sub.add_parser(
        "ensure", help="make this month's partitions and ECARD_PARTITIONS_AHEAD_MONTHS more now (the service does too)"
    ).set_defaults(func=cmd_partitions)
    retain = partitions_sub.add_parser(
        "retain", help="detach the months older than --older-than, archive each to a gzip CSV, check it, drop it"
    )
    retain.add_argument(
        "--older-than",
        type=int,
        required=True,
        metavar="MONTHS",
        help="keep this month and the MONTHS months before it; older months are archived and dropped",
    )
    retain.add_argument("--table", default="verifications", choices=["verifications"], help="the table")
    retain.add_argument("--archive-dir", default=None, help="where archives go (default: $ECARD_DATA_DIR/archive)")
    retain.set_defaults(func=cmd_partitions)

    keygen = sub.add_parser("keygen", help="make a client key pair (private JWK to a file, public JWK printed)")
    keygen.add_argument("--out", required=True, help="file for the private JWK (written mode 0600)")
    keygen.add_argument("--curve", choices=["ed25519", "p256"], default="ed25519", help="key type")
    keygen.set_defaults(func=cmd_keygen)

    call = sub.add_parser(
        "call",
        help="send an RFC 9421-signed request (like curl, signing as API.md asks)",
        description="Sign a request as API.md asks and send it. The response body goes to stdout and the status "
        "line to stderr, so that the body pipes into other tools; exit status 1 unless the answer is 2xx.",
    )
    call.add_argument("method", help="HTTP method, e.g. POST")
    call.add_argument("url", help="the full URL, e.g. http://127.0.0.1:8000/v1/codes")
    call.add_argument(
        "body", nargs="?", default="", help="JSON body: the text itself, @FILE to read a file, or - to read stdin"
    )
    call.add_argument("--key", required=True, help="private JWK file (its `kid` is used as keyid)")
    call.add_argument("--keyid", default=None, help="the key id to sign with (default: the key file's `kid`)")
    call.add_argument("--accept", default="application/json", help="the Accept header")
    call.add_argument("--out", default=None, help="write the response body to this file instead of stdout")
    call.add_argument(
        "-i", "--include", action="store_true", help="print the status line and headers on stdout before the body"
    )
    call.set_defaults(func=cmd_call)

    partners = sub.add_parser("partners", help="the trust list of partner issuers (docs/federation.md)")
    partners_sub = _commands(partners, "action", "actions")
    partners_sub.add_parser("list", help="partners, their code keys and when those were fetched").set_defaults(
        func=cmd_partners
    )
    padd = partners_sub.add_parser("add", help="register a partner issuer (fetches its request key unless given)")
    padd.add_argument("--issuer", required=True, help="the partner's issuer id, e.g. sc")
    padd.add_argument("--name", required=True, help="the partner's display name")
    padd.add_argument("--base-url", required=True, help="where the partner's ecard answers, e.g. http://10.0.0.2:8000")
    padd.add_argument("--region", default=None, help="the region its joint items carry (default: the issuer id)")
    padd.add_argument("--public-key", default=None, help="a JWK file instead of fetching /v1/issuer/request-keys")
    padd.set_defaults(func=cmd_partners)
    refresh = partners_sub.add_parser("refresh", help="fetch a partner's code keys now")
    refresh.add_argument("issuer", help="the partner's issuer id")
    refresh.set_defaults(func=cmd_partners)

    standin = sub.add_parser("standin", help="stand-ins of external systems, for development, tests and the demo")
    standin_sub = _commands(standin, "system", "systems")
    yukuai = standin_sub.add_parser("yukuai", help="the 渝快办 platform (docs/yukuai-protocol.md); memory only")
    yukuai.add_argument("--host", default="127.0.0.1", help="address to listen on")
    yukuai.add_argument("--port", type=int, required=True, help="port to listen on")
    yukuai.add_argument(
        "--trust-keys", default=None, help="JWKS URL of the ecard's request keys; without it, unsigned requests pass"
    )
    yukuai.add_argument("--code-ttl", type=int, default=60, help="lifetime of a minted 渝快码, seconds")
    yukuai.add_argument(
        "--link-token-ttl", type=int, default=300, help="lifetime of a link token the platform issues, seconds"
    )
    yukuai.add_argument("--issuer", default="ykb", help="the platform's issuer id as a partner")
    yukuai.set_defaults(func=cmd_standin_yukuai)
    bank = standin_sub.add_parser("bank", help="the bank holding card accounts (docs/bank-protocol.md)")
    bank.add_argument("--host", default="127.0.0.1", help="address to listen on")
    bank.add_argument("--port", type=int, required=True, help="port to listen on")
    bank.add_argument("--data", default=None, help="ledger folder (default: $ECARD_DATA_DIR/standin-bank)")
    bank.add_argument(
        "--trust-keys", default=None, help="JWKS URL of the issuer's request keys; without it, unsigned requests pass"
    )
    bank.set_defaults(func=cmd_standin_bank)

    ledger = sub.add_parser("ledger", help="the payments ledger (docs/payments.md)")
    ledger_sub = _commands(ledger, "action", "actions")
    ledger_sub.add_parser(
        "check", help="Σ = 0 overall and per transfer, and every bill's state as its entries say (exit 1 if not)"
    ).set_defaults(func=cmd_ledger)
    reconcile = ledger_sub.add_parser(
        "reconcile", help="compare a day's ledger with the bank's transfers (ECARD_BANK_URL; exit 1 on differences)"
    )
    reconcile.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
    reconcile.set_defaults(func=cmd_ledger)
    payments = sub.add_parser("payments", help="payment pull-ups (docs/payments.md)")
    payments_sub = _commands(payments, "action", "actions")
    payments_sub.add_parser(
        "recover",
        help="settle unfinished payments and refunds with the bank now (ECARD_BANK_URL; those whose leases ran out)",
    ).set_defaults(func=cmd_payments_recover)

    portals = sub.add_parser("portals", help="portals that log citizens in with the e-card (docs/portal.md)")
    portals_sub = _commands(portals, "action", "actions")
    padd_portal = portals_sub.add_parser("add", help="register a portal; prints its client_id")
    padd_portal.add_argument("--name", required=True, help="the portal's display name")
    padd_portal.add_argument("--redirect-uri", action="append", required=True, help="exact redirect URI (repeatable)")
    padd_portal.add_argument("--jwks", required=True, help="file with the portal's public JWK or JWKS (P-256, ES256)")
    padd_portal.add_argument("--claims", default="region", help="comma-separated: name,id_number,region,card_status")
    padd_portal.add_argument("--items", required=True, help="comma-separated catalog items the portal serves")
    padd_portal.set_defaults(func=cmd_portals)
    portals_sub.add_parser("list", help="every registered portal").set_defaults(func=cmd_portals)
    portals_sub.add_parser(
        "rotate-key", help="a new id_token signing key; the old one stays published for a day"
    ).set_defaults(func=cmd_portals)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; `ecard call`'s body may also come after its options, as a curl user writes it."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse binds positionals greedily: in `call POST URL --key K BODY` the optional BODY is already
    # taken (empty) when BODY comes, so it lands among the unknown arguments.
    late_body = len(extra) == 1 and (extra[0] == "-" or not extra[0].startswith("-"))
    if getattr(args, "command", None) == "call" and not args.body and late_body:
        args.body = extra.pop()
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from ecard.ops import configure  # noqa: PLC0415

    args = parse_args(argv)
    settings = Settings.from_env()
    configure("WARNING")
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

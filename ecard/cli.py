"""The `ecard` command: serve, migrate, seed, operator, catalog, keys."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from ecard.config import Settings
from ecard.kit.crypto import b64u, b64u_decode


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

    from ecard.seed import bootstrap, seed_demo  # noqa: PLC0415

    embedded = not (settings.database_url and settings.redis_url)
    # SIGTERM must unwind like Ctrl-C so that the embedded services are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _raise_exit)
    with _services(settings, for_serve=True) as live:
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
        print(f"ecard serving on http://{args.host}:{args.port} (issuer {live.issuer_id})", file=sys.stderr)
        uvicorn.run(
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
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    from ecard.seed import bootstrap  # noqa: PLC0415

    with _services(settings) as live:
        applied = asyncio.run(bootstrap(live))
    print(json.dumps({"applied": applied}))
    return 0


def cmd_operator_add(args: argparse.Namespace, settings: Settings) -> int:
    from ecard.kit.problems import Refusal  # noqa: PLC0415

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
    from ecard.kit.problems import Refusal  # noqa: PLC0415

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
    from ecard.kit.problems import Refusal  # noqa: PLC0415

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
            if args.action == "rotate":
                return {"rotated_to": b64u(await ring.rotate()), "keys": ring.published()}
            if args.action == "revoke":
                try:
                    kid = b64u_decode(args.kid)
                except ValueError as exc:
                    raise Refusal("invalid_request", "KID must be base64url, as published") from exc
                await ring.revoke(kid)
                return {"revoked": args.kid, "keys": ring.published()}
            return {"issuer": live.issuer_id, "keys": ring.published()}

    with _services(settings) as live:
        try:
            print(json.dumps(asyncio.run(run(live)), indent=2))
        except Refusal as refusal:
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}), file=sys.stderr)
            return 2
    return 0


def cmd_keygen(args: argparse.Namespace, _: Settings) -> int:
    """A client key pair for trying the API: the private JWK goes to a 0600 file, the public one to stdout."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: PLC0415

    from ecard.kit.crypto import write_private_file  # noqa: PLC0415
    from ecard.kit.jwk import private_jwk, public_jwk  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1()) if args.curve == "p256" else ed25519.Ed25519PrivateKey.generate()
    write_private_file(Path(args.out), json.dumps(private_jwk(key)).encode())
    print(json.dumps(public_jwk(key.public_key())))
    return 0


def cmd_call(args: argparse.Namespace, _: Settings) -> int:
    """Sign a request as API.md asks and send it: curl for RFC 9421 clients."""
    import httpx  # noqa: PLC0415

    from ecard.kit.jwk import load_private_jwk  # noqa: PLC0415
    from ecard.kit.signing import sign_request  # noqa: PLC0415

    jwk = json.loads(Path(args.key).read_text())
    key, alg = load_private_jwk(jwk)
    keyid = args.keyid or jwk.get("kid")
    if not keyid:
        print('no key id: pass --keyid or put "kid" in the key file', file=sys.stderr)
        return 2
    body = args.body.encode() if args.body else b""
    headers = sign_request(args.method, args.url, body, key, keyid, alg)
    headers["Accept"] = args.accept
    if body:
        headers["Content-Type"] = "application/json"
    answer = httpx.request(args.method.upper(), args.url, content=body, headers=headers, timeout=10)
    if args.out:
        Path(args.out).write_bytes(answer.content)
        print(json.dumps({"status": answer.status_code, "saved": args.out, **dict(answer.headers)}))
    else:
        print(answer.status_code, answer.text)
    return 0 if answer.is_success else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (embedded PostgreSQL and Valkey when none is configured)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply migrations, seed the catalog, make sure an issuer key exists").set_defaults(
        func=cmd_migrate
    )

    operator = sub.add_parser("operator", help="operator accounts")
    operator_sub = operator.add_subparsers(dest="action", required=True)
    add = operator_sub.add_parser("add", help="create an operator; prints its password and TOTP URI once")
    add.add_argument("--username", required=True)
    add.add_argument("--password", default=None)
    add.set_defaults(func=cmd_operator_add)

    catalog = sub.add_parser("catalog", help="the catalog of card uses")
    catalog_sub = catalog.add_subparsers(dest="action", required=True)
    import_ = catalog_sub.add_parser(
        "import", help="apply a CSV with the columns of wulong-2025.csv as one new version (all rows or none)"
    )
    import_.add_argument("file", help="the CSV file; optional columns regions, effective_from, effective_to")
    import_.set_defaults(func=cmd_catalog_import)

    keys = sub.add_parser("keys", help="issuer code-signing keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    keys_sub.add_parser("list", help="the published keys").set_defaults(func=cmd_keys)
    keys_sub.add_parser(
        "rotate", help="add a new active key; the old one verifies until its codes expire"
    ).set_defaults(func=cmd_keys)
    revoke = keys_sub.add_parser("revoke", help="refuse a key's codes at once (key_revoked)")
    revoke.add_argument("kid", help="the key's kid as published (base64url)")
    revoke.set_defaults(func=cmd_keys)
    keygen = sub.add_parser("keygen", help="make a client key pair (private JWK to a file, public JWK printed)")
    keygen.add_argument("--out", required=True)
    keygen.add_argument("--curve", choices=["ed25519", "p256"], default="ed25519")
    keygen.set_defaults(func=cmd_keygen)

    call = sub.add_parser("call", help="send an RFC 9421-signed request (like curl, signing as API.md asks)")
    call.add_argument("method")
    call.add_argument("url")
    call.add_argument("body", nargs="?", default="")
    call.add_argument("--key", required=True, help="private JWK file (its `kid` is used as keyid)")
    call.add_argument("--keyid", default=None)
    call.add_argument("--accept", default="application/json")
    call.add_argument("--out", default=None, help="write the response body to this file")
    call.set_defaults(func=cmd_call)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ecard.ops import configure  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure("WARNING")
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

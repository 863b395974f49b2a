"""The `ecard` command: serve, migrate, seed, operator, keys."""

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
        from ecard.kit.infra import create_pool, create_redis  # noqa: PLC0415
        from ecard.operators import Operators  # noqa: PLC0415

        assert live.database_url
        assert live.redis_url
        pool = await create_pool(live.database_url, 1, 1)
        redis = create_redis(live.redis_url)
        try:
            keys = Keys.from_master(load_master_key(live))
            ops = Operators(pool, redis, keys, SystemClock(), live.redis_prefix, live.session_ttl_s)
            password, uri = await ops.add(args.username, args.password)
        finally:
            await redis.aclose()
            await pool.close()
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


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from ecard.kit.problems import Refusal  # noqa: PLC0415

    async def run(live: Settings) -> object:
        from ecard.codes import KeyRing  # noqa: PLC0415
        from ecard.kit.clock import SystemClock  # noqa: PLC0415
        from ecard.kit.crypto import Keys, load_master_key  # noqa: PLC0415
        from ecard.kit.infra import create_pool, create_redis  # noqa: PLC0415

        assert live.database_url
        assert live.redis_url
        pool = await create_pool(live.database_url, 1, 1)
        redis = create_redis(live.redis_url)
        try:
            ring = KeyRing(
                pool,
                redis,
                Keys.from_master(load_master_key(live)),
                SystemClock(),
                live.redis_prefix,
                live.issuer_id,
                live.code_ttl_s,
                live.clock_skew_s,
                live.issuer_signing_key,
            )
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
        finally:
            await redis.aclose()
            await pool.close()

    with _services(settings) as live:
        try:
            print(json.dumps(asyncio.run(run(live)), indent=2))
        except Refusal as refusal:
            print(json.dumps({"error": refusal.code, "detail": refusal.detail}), file=sys.stderr)
            return 2
    return 0


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

    keys = sub.add_parser("keys", help="issuer code-signing keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    keys_sub.add_parser("list", help="the published keys").set_defaults(func=cmd_keys)
    keys_sub.add_parser(
        "rotate", help="add a new active key; the old one verifies until its codes expire"
    ).set_defaults(func=cmd_keys)
    revoke = keys_sub.add_parser("revoke", help="refuse a key's codes at once (key_revoked)")
    revoke.add_argument("kid", help="the key's kid as published (base64url)")
    revoke.set_defaults(func=cmd_keys)
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

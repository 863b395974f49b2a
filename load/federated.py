"""The federated scenario: codes minted at a second issuer, `sc`, verified at `cq`, which forwards each to `sc`."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sampling
from actors import Cast, citizens
from prebuild import Factory, mint_codes
from scenarios import POOL_HEADROOM, Bench
from server import Server, ecard_cli, forget_redis_keys, load_database, serving
from stats import Meter

from ecard.kit.embedded import discover

NAME = "federated_verification"
PARTNER = "sc"


def partner_env(env: dict[str, str]) -> dict[str, str]:
    """The `sc` issuer's environment: the run's, with its own issuer id, database, Redis prefix and data folder."""
    own = dict(env)
    own.update(
        ECARD_ISSUER_ID=PARTNER,
        ECARD_REDIS_PREFIX=f"ecardload:{PARTNER}:{secrets.token_hex(6)}:",
        ECARD_DATA_DIR=str(Path(env["ECARD_DATA_DIR"]).parent / f"data-{PARTNER}"),
    )
    if env.get("ECARD_DATABASE_URL"):
        own["ECARD_DATABASE_URL"] = load_database(os.environ["ECARD_DATABASE_URL"], f"_ecard_load_{PARTNER}")
    return own


def _database_url(env: dict[str, str]) -> str | None:
    if env.get("ECARD_DATABASE_URL"):
        return env["ECARD_DATABASE_URL"]
    found = discover(Path(env["ECARD_DATA_DIR"]))
    return found.database_url if found else None


def _register(env: dict[str, str], issuer: str, name: str, base_url: str) -> None:
    """`ecard partners add` at the instance `env` serves, which fetches the partner's request key from `base_url`."""
    ecard_cli(env, "partners", "add", "--issuer", issuer, "--name", name, "--base-url", base_url)


@contextlib.contextmanager
def partnered(cq: Server, env: dict[str, str]) -> Iterator[tuple[Server, dict[str, str]]]:
    """`sc` served for the block, each issuer registered as the other's partner; stopped and its keys deleted after."""
    sc_env = partner_env(env)
    try:
        if sc_env.get("ECARD_DATABASE_URL"):
            ecard_cli(sc_env, "migrate")
        with serving(sc_env) as sc:
            _register(env, PARTNER, "四川省电子社保卡(压测)", sc.base_url)
            _register(sc_env, "cq", "重庆市电子社保卡(压测)", cq.base_url)
            yield sc, sc_env
    finally:
        forget_redis_keys(sc_env)


def federated_verification(bench: Bench, env: dict[str, str], cq: Server, local_rps: float) -> dict[str, Any]:
    """cq's merchant verifies codes of `sc` cardholders at cq (item wl-030, on the joint list); cq asks sc each time.

    The figures are cq's answers as the merchant sees them; `partner_*` is what serving them cost the sc process."""
    plan = bench.plan
    with partnered(cq, env) as (sc, sc_env):
        channel, devices = citizens(sc.base_url, sc_env, plan.devices, PARTNER)
        minter = Factory(Cast(bench.factory.cast.merchant, channel, devices), sc.port)
        pool = min(plan.verify_cap, max(2000, int(POOL_HEADROOM * local_rps * plan.verify_s)))
        codes, _ = mint_codes(minter, pool + plan.warmup, plan.conns, plan.mint_budget_s)
        partner_app = sc.app_process()
        sampler = None
        if bench.profile is not None:
            sampler = sampling.start(partner_app.pid, plan.verify_s - 1, bench.profile / f"{NAME}_{PARTNER}.txt")
        # started before the warm-up, so the partner's CPU is divided by the warm-up's requests as well
        partner = Meter(partner_app, _database_url(sc_env)).start()
        result = bench.timed(NAME, bench.factory.verifications(codes), 200, plan.verify_s)
        spent = partner.read()
        if sampler is not None:
            bench.profiles[f"{NAME}_{PARTNER}"] = sampler.finish()
    answered = result["requests"] + min(plan.warmup, len(codes))
    result.update(
        partner_cpu_ms_per_req=round(1000 * spent["server_cpu_s"] / answered, 3) if answered else 0.0,
        partner_cpu_pct=round(spent["server_cpu_pct"], 1),
        partner_db_cpu_pct=round(spent["db_cpu_pct"], 1),
    )
    return result

"""Before/after in one run: the verification route of an older commit (`--base`, default HEAD) and of the work
tree, served side by side on one machine, driven in alternating rounds (verification, code issuance as JSON,
then the bare echo the targets are ratios of); prints the ratios.

Each side gets its own `ecard serve`, database (`<db>_ecard_ab_base` / `_ecard_ab_new`, plus
ECARD_LOAD_DB_SUFFIX) and Redis prefix; rounds alternate base, new, base, new... so that neighbours on a shared
machine disturb both alike. Figures per side: closed-loop req/s and the app's CPU ms per verification (median
over rounds), then p50/p99 of an open loop at the same fixed rate on both (70 % of the slower side's maximum).

`--new-env NAME=VALUE` (repeatable) sets a variable for the new side only: with `--base HEAD` and a clean work
tree, the A/B of one setting (e.g. `--new-env ECARD_RISK_RULES=0`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actors import set_up
from prebuild import Factory
from scenarios import QUICK, Bench
from server import LONG_LIVED, REPO, Server, ecard_cli, forget_redis_keys, load_database, serving

SIDES = ("base", "new")


def _export(ref: str, into: Path) -> Path:
    """The source tree of commit `ref`, unpacked into `into` (git archive: no work tree, no worktree entry)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _env(side: str, data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ) | extra
    env.update(LONG_LIVED)
    env.update(ECARD_LOAD_ECHO="1", ECARD_REDIS_PREFIX=f"ecardab:{side}:{secrets.token_hex(4)}:")
    env["ECARD_DATA_DIR"] = str(data_dir)
    if not (env.get("ECARD_DATABASE_URL") and env.get("ECARD_REDIS_URL")):
        raise SystemExit("ab.py needs ECARD_DATABASE_URL and ECARD_REDIS_URL (a configured PostgreSQL and Redis)")
    env["ECARD_DATABASE_URL"] = load_database(env["ECARD_DATABASE_URL"], f"_ecard_ab_{side}")
    return env


@contextlib.contextmanager
def _side(
    side: str, code: Path, folder: Path, extra: dict[str, str] | None = None
) -> Iterator[tuple[Server, dict[str, str]]]:
    env = _env(side, folder / side, extra or {})
    try:
        ecard_cli(env, "migrate")
        with serving(env, 1, code) as server:
            yield server, env
    finally:
        forget_redis_keys(env)


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="HEAD", help="the commit to compare the work tree against")
    parser.add_argument("--rounds", type=int, default=3, help="alternating closed-loop rounds per side")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one round")
    parser.add_argument(
        "--new-env", action="append", default=[], metavar="NAME=VALUE", help="a variable for the new side only"
    )
    args = parser.parse_args(argv)
    new_extra = dict(item.split("=", 1) for item in args.new_env)
    plan = dataclasses.replace(QUICK, verify_s=args.seconds, fixed_s=args.seconds + 2, json_s=args.seconds)
    with tempfile.TemporaryDirectory(prefix="ecard-ab-") as tmp:
        folder = Path(tmp)
        base_code = _export(args.base, folder / "base-code")
        with (
            _side("base", base_code, folder) as (base, base_env),
            _side("new", REPO, folder, new_extra) as (new, new_env),
        ):
            benches = {}
            for side, server, env in (("base", base, base_env), ("new", new, new_env)):
                cast = set_up(server.base_url, env, plan.devices)
                benches[side] = Bench(server, Factory(cast, server.port), plan, env["ECARD_DATABASE_URL"], None)
                benches[side].mint(plan.warmup)
            rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            issuing: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            echoes: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            echo_code = {side: benches[side].mint(1)[0] for side in SIDES}
            for i in range(args.rounds):
                for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                    rounds[side].append(benches[side].verification())
                    print(f"round {i + 1} {side}: {_brief(rounds[side][-1])}", flush=True)
                    issuing[side].append(benches[side].codes_json())
                    print(f"round {i + 1} {side} codes_json: {_brief(issuing[side][-1])}", flush=True)
                    echoes[side].append(benches[side].echo(echo_code[side]))
                    print(f"round {i + 1} {side} echo: {_brief(echoes[side][-1])}", flush=True)
            rate = 0.7 * min(_median(rounds[side], "rps") for side in SIDES)
            paced = {}
            for side in SIDES:
                paced[side] = benches[side].fixed_rate(rate / plan.fixed_share)
                print(f"paced {side}: {_brief(paced[side])}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    print(_report(args.base, rounds, paced, rate))
    if new_extra:
        print("new side's own settings: " + " ".join(args.new_env))
    print(_row("codes_json req/s", {s: _median(issuing[s], "rps") for s in SIDES}, 0, better_when_higher=True))
    cpu = {s: _median(issuing[s], "server_cpu_ms_per_req") for s in SIDES}
    print(_row("app CPU ms/code (JSON)", cpu, 3, better_when_higher=False))
    # the echo is the floor the targets are ratios of: a change that slowed it would flatter them
    echo = {s: _median(echoes[s], "rps") for s in SIDES}
    print(_row("echo req/s", echo, 0, better_when_higher=True))
    echo_cpu = {s: _median(echoes[s], "server_cpu_ms_per_req") for s in SIDES}
    print(_row("app CPU ms/echo", echo_cpu, 3, better_when_higher=False))
    ratio = {s: _median(rounds[s], "rps") / echo[s] for s in SIDES}
    print(_row("verification / echo", ratio, 3, better_when_higher=True))
    return 0


def _brief(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    return (
        f"{s['rps']:.0f} req/s, cpu {s['server_cpu_ms_per_req']:.3f} ms/req, p50 {lat['p50']:.2f} p99 {lat['p99']:.2f}"
        f" ms, non-expected {s['unexpected']}"
    )


def _row(name: str, values: dict[str, float], digits: int, better_when_higher: bool) -> str:
    base, new = values["base"], values["new"]
    ratio = new / base if better_when_higher else base / new
    label = "new/base" if better_when_higher else "base/new"
    return f"{name:<28} base {base:.{digits}f}  new {new:.{digits}f}  {label} {ratio:.3f}"


def _report(base: str, rounds: dict[str, list[dict[str, Any]]], paced: dict[str, dict[str, Any]], rate: float) -> str:
    cpu = {side: _median(rounds[side], "server_cpu_ms_per_req") for side in SIDES}
    rps = {side: _median(rounds[side], "rps") for side in SIDES}
    p99 = {side: float(paced[side]["latency_ms"]["p99"]) for side in SIDES}
    return "\n".join(
        [
            f"\nbase = {base}, new = work tree; medians of {len(rounds['base'])} alternating rounds",
            _row("verification req/s", rps, 0, better_when_higher=True),
            _row("app CPU ms/verification", cpu, 3, better_when_higher=False),
            _row(f"p99 ms paced at {rate:.0f}/s", p99, 2, better_when_higher=False),
            f"run at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

"""Load test of ecard: starts `ecard serve`, sets up clients via the API, measures scenarios side by side."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sampling
from actors import set_up
from federated import federated_verification
from prebuild import Factory
from report import RESULTS, ratios, render, save
from scenarios import FULL, QUICK, Bench, Plan, qr_timing
from server import LONG_LIVED, Server, ecard_cli, forget_redis_keys, service_env, serving
from signer import self_check

from ecard.kit.embedded import discover


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (about 2 minutes)")
    parser.add_argument("--procs", type=int, default=None, help="client processes (default 1)")
    parser.add_argument("--conns", type=int, default=None, help="connections in all (default 32)")
    parser.add_argument("--devices", type=int, default=None, help="enrolled devices minting codes")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of `ecard serve`")
    parser.add_argument(
        "--profile", action="store_true", help="sample the app with py-spy during the timed scenarios (perturbs them)"
    )
    parser.add_argument(
        "--native", action="store_true", help="with --profile: py-spy --native, so that C frames (the GC) show"
    )
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    given = {"procs": args.procs, "conns": args.conns, "devices": args.devices}
    return dataclasses.replace(plan, **{k: v for k, v in given.items() if v is not None})


def say(text: str) -> None:
    print(text, flush=True)


def _line(name: str, s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    return (
        f"  {name}: {s['rps']:.0f} req/s over {s['requests']} requests, p50 {lat['p50']:.2f} / p95 {lat['p95']:.2f}"
        f" / p99 {lat['p99']:.2f} ms, non-expected {s['unexpected']} {s['unexpected_samples'][:1]}"
        f"{' (stopped by count)' if s.get('exhausted') else ''}; load avg {s['load_avg_1m']:.1f}"
    )


def measure(server: Server, env: dict[str, str], plan: Plan, profile: Path | None) -> dict[str, Any]:
    """Every scenario in one run against one server; each one's requests are pre-built before its clock starts."""
    cast = set_up(server.base_url, env, plan.devices)
    factory = Factory(cast, server.port)
    bench = Bench(server, factory, plan, _database_url(env), profile)
    say(f"set up: merchant, channel, {len(cast.devices)} devices; app process pid {bench.app.pid}")
    sample = bench.mint(plan.qr_n)
    scenarios: dict[str, dict[str, Any]] = {}
    steps: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
        ("echo", lambda: bench.echo(sample[0])),
        ("verification", bench.verification),
        (
            "federated_verification",
            lambda: federated_verification(bench, env, server, scenarios["verification"]["rps"]),
        ),
        ("codes_json", bench.codes_json),
        ("codes_png", bench.codes_png),
        ("fixed_rate", lambda: bench.fixed_rate(scenarios["verification"]["rps"])),
        ("crowd_1000", lambda: bench.crowd(scenarios["verification"]["rps"])),
    )
    for name, step in steps:
        scenarios[name] = step()
        say(_line(name, scenarios[name]))
    crowd = scenarios["crowd_1000"]
    say(f"  crowd_1000: {crowd['5xx']} answers 5xx over {crowd['conns']} connections, by code {crowd['5xx_by_code']}")
    qr = qr_timing(sample)
    say(
        f"  qr.png in process: mean {qr['mean_ms']:.3f} ms, p99 {qr['p99_ms']:.3f} ms over {qr['codes']} codes"
        f" (CPU time: mean {qr['cpu_mean_ms']:.3f} ms, p99 {qr['cpu_p99_ms']:.3f} ms)"
    )
    memory = bench.memory()
    say(f"  memory: RSS {memory['rss_mb']} (verifications, MB)")
    return {"app_pid": bench.app.pid, "scenarios": scenarios, "qr_png": qr, "memory": memory, **_profiles(bench)}


def _database_url(env: dict[str, str]) -> str | None:
    """The configured load database, or the one the server's embedded PostgreSQL serves."""
    if env.get("ECARD_DATABASE_URL"):
        return env["ECARD_DATABASE_URL"]
    found = discover(Path(env["ECARD_DATA_DIR"]))
    return found.database_url if found else None


def _profiles(bench: Bench) -> dict[str, Any]:
    for name, found in bench.profiles.items():
        say(f"  py-spy, {name}: {found.get('samples', 0)} samples, top self %: {found.get('self_pct', [found])[:8]}")
    return {"profiles": bench.profiles} if bench.profiles else {}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = plan_of(args)
    self_check()
    started = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    profile = RESULTS / f"{stamp}-profile" if args.profile else None
    sampling.NATIVE["on"] = args.native
    say(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ecard-load-") as folder:
        env = service_env(Path(folder) / "data")
        external = bool(env.get("ECARD_DATABASE_URL"))
        where = env["ECARD_DATABASE_URL"].rsplit("/", 1)[-1] if external else f"embedded, in {folder}"
        say(f"database: {where}; Redis prefix {env['ECARD_REDIS_PREFIX']}")
        say(
            "server env: "
            + " ".join(f"{k}={v}" for k, v in LONG_LIVED.items())
            + " so that pre-minted codes and pre-signed requests stay valid for the whole run; ECARD_LOAD_ECHO=1"
        )
        try:
            if external:
                ecard_cli(env, "migrate")
            with serving(env, args.workers) as server:
                say(f"ecard serve on {server.base_url} (pid {server.proc.pid}, {args.workers} worker)")
                results = measure(server, env, plan, profile)
        finally:
            forget_redis_keys(env)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if args.quick else "full",
        "plan": dataclasses.asdict(plan),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "database": where},
        "wall_s": round(time.monotonic() - started, 1),
        **results,
    }
    results["ratios"] = ratios(results["scenarios"], results["qr_png"], results["memory"])
    say("\n" + render(results))
    say(f"\nresults: {save(results, stamp)} (wall {results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

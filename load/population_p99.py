"""Verification p99 at one fixed rate over populations of different sizes (issue 13, item 6): within ±20 % of 10 k's.

    python load/population_p99.py [--sizes 10000,1000000] [--rate 300] [--seconds 20] [--rounds 3]

For each size it writes a population with load/population.py into its own database `<db>_ecard_pop<size>` (plus
ECARD_LOAD_DB_SUFFIX), under a master key and a pool of device key pairs made up for the run, VACUUMs it, and starts
`ecard serve` on it with that master key (ECARD_SECRET_KEY), so that the population's own devices can sign.
Each server gets an operator, a channel and a merchant for wl-030 through the API; `--devices` devices drawn at
random from the population mint every code the run verifies, before any clock starts. Then, round by round and
size by size in turn (the machine is shared: interleaving spreads its noise over every size), verification is
driven open loop at `--rate` for `--seconds`, latency counted from each request's scheduled send time.
Prints a table and the ratio of each size's p99 to the first size's, and writes
load/results/<stamp>-population-p99.json. The databases are dropped at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from actors import Cast, set_up
from drive import Job, run
from population import CHANNEL, key_pool, populate
from prebuild import Factory, mint_codes
from report import save
from server import LONG_LIVED, Server, forget_redis_keys, serving
from signer import Actor, self_check
from stats import Meter, figures, latency_ms

from ecard.kit.crypto import b64u
from ecard.kit.infra import recreate_database
from ecard.kit.jwk import public_jwk, thumbprint

TOLERANCE = 0.20
WARMUP_S = 2.0
CONNS = 32

# devices drawn at random from the population, each with its key id and the thumbprint that names its key pair
_SAMPLE = """
SELECT d.device_id, d.card_id, k.key_id, k.thumbprint
FROM devices d JOIN client_keys k ON k.key_id = d.key_id
WHERE d.channel_id = $1
ORDER BY random() LIMIT $2
"""


@dataclass
class Size:
    """One population size: its database, server, clients, and what each round measured on it."""

    cards: int
    url: str
    populated: dict[str, object]
    env: dict[str, str] = field(default_factory=dict)
    server: Server | None = None
    factory: Factory | None = None
    codes: list[str] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="population sizes, the first the reference")
    parser.add_argument("--rate", type=float, default=300, help="verifications per second, the same for every size")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per size and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every size in turn")
    parser.add_argument("--devices", type=int, default=500, help="population devices minting the verified codes")
    parser.add_argument("--procs", type=int, default=2, help="processes sealing while one writes (population.py)")
    parser.add_argument("--batch", type=int, default=20_000, help="rows per COPY and transaction (population.py)")
    parser.add_argument("--keep", action="store_true", help="keep the population databases after the run")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if not args.sizes or min(args.sizes) < args.devices:
        parser.error("every size must hold at least --devices cards")
    if not os.environ.get("ECARD_DATABASE_URL") or not os.environ.get("ECARD_REDIS_URL"):
        parser.error("ECARD_DATABASE_URL and ECARD_REDIS_URL must name a PostgreSQL and a Redis server")
    return args


def _database(cards: int) -> str:
    suffix = f"_ecard_pop{cards}" + os.environ.get("ECARD_LOAD_DB_SUFFIX", "")
    return asyncio.run(recreate_database(os.environ["ECARD_DATABASE_URL"], suffix))


def _drop(url: str) -> None:
    async def drop() -> None:
        name = url.rsplit("/", 1)[-1]
        conn = await asyncpg.connect(os.environ["ECARD_DATABASE_URL"])
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


async def _settle(url: str) -> None:
    """VACUUM and CHECKPOINT after the bulk load, as a long-lived database would be: else autovacuum sets the fresh
    rows' hint bits and visibility map during the rounds, on the large population only, and the flush follows."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def _env(url: str, master: bytes, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LONG_LIVED)
    env.update(
        ECARD_DATABASE_URL=url,
        ECARD_SECRET_KEY=b64u(master),
        ECARD_REDIS_PREFIX=f"ecardload:pop:{secrets.token_hex(6)}:",
        ECARD_DATA_DIR=str(data_dir),
    )
    return env


def population_devices(url: str, pool: list[Any], count: int) -> list[Actor]:
    """`count` of the population's devices, at random, each with the private key of its pool key pair."""
    by_print = {thumbprint(public_jwk(key.public_key())): key for key in pool}

    async def sample() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(_SAMPLE, CHANNEL, count))
        finally:
            await conn.close()

    return [
        Actor(by_print[r["thumbprint"]], key_id=r["key_id"], ids={"device_id": r["device_id"], "card_id": r["card_id"]})
        for r in asyncio.run(sample())
    ]


def measure(size: Size, rate: float, seconds: float, round_no: int) -> dict[str, Any]:
    """A short warm-up, then `seconds` of verification open loop at `rate`, on this size's own codes."""
    assert size.server is not None
    assert size.factory is not None
    warm, need = int(rate * WARMUP_S), int(rate * seconds)
    codes, size.codes = size.codes[: warm + need], size.codes[warm + need :]
    requests = size.factory.verifications(codes)
    run(Job(size.server.port, requests[:warm], 200, CONNS, float("inf"), rate))
    meter = Meter(size.server.app_process(), size.env["ECARD_DATABASE_URL"]).start()
    outcome = run(Job(size.server.port, requests[warm:], 200, CONNS, float("inf"), rate))
    size.latencies_s.extend(outcome.latencies_s)
    result = {"round": round_no, "cards": size.cards, **figures(outcome, 200, meter.read())}
    lat = result["latency_ms"]
    say(
        f"  round {round_no}, {size.cards:>10,} cards: {result['rps']:.0f}/s, p50 {lat['p50']:.2f} ms,"
        f" p99 {lat['p99']:.2f} ms, app {result['server_cpu_ms_per_req']:.2f} ms CPU/req,"
        f" non-200 {result['unexpected']} {result['unexpected_samples'][:1]};"
        f" machine {result['machine_busy_pct']:.0f} %, load avg {result['load_avg_1m']:.1f}"
    )
    return result


def summary(sizes: list[Size]) -> list[dict[str, Any]]:
    """Per size: pooled p50/p99 over every round, the median of the rounds' p99, and both ratios to the first size."""
    rows = []
    for size in sizes:
        pooled = latency_ms(size.latencies_s)
        per_round = sorted(r["latency_ms"]["p99"] for r in size.rounds)
        cpu = sorted(r["server_cpu_ms_per_req"] for r in size.rounds)
        rows.append(
            {
                "cards": size.cards,
                "requests": len(size.latencies_s),
                "non_200": sum(r["unexpected"] for r in size.rounds),
                "p50_ms": round(pooled["p50"], 3),
                "p99_ms": round(pooled["p99"], 3),
                "round_p99_ms": per_round,
                "median_round_p99_ms": per_round[len(per_round) // 2],
                # the app's CPU time per verification: steadier than latency on a shared machine
                "median_cpu_ms_per_req": cpu[len(cpu) // 2],
            }
        )
    first = rows[0]
    for size, row in zip(sizes, rows, strict=True):
        row["p99_ratio"] = round(row["p99_ms"] / first["p99_ms"], 3)
        row["median_round_p99_ratio"] = round(row["median_round_p99_ms"] / first["median_round_p99_ms"], 3)
        # each round's p99 over the first size's in the same round (measured back to back), their median
        paired = sorted(
            mine["latency_ms"]["p99"] / ref["latency_ms"]["p99"]
            for mine, ref in zip(size.rounds, sizes[0].rounds, strict=True)
        )
        row["paired_p99_ratios"] = [round(x, 3) for x in paired]
        row["median_paired_p99_ratio"] = round(paired[len(paired) // 2], 3)
        row["cpu_ratio"] = round(row["median_cpu_ms_per_req"] / first["median_cpu_ms_per_req"], 3)
        row["within_target"] = abs(row["p99_ratio"] - 1) <= TOLERANCE
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """Ratios are to the first size: of pooled p99s, of median round p99s, median of same-round p99 ratios, of CPU."""
    head = f"{'cards':>12} {'requests':>9} {'non-200':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7} {'median':>7}"
    head += f" {'paired':>7} {'cpu ms/req':>11} {'cpu':>6}  ±20 %  round p99s ms"
    return "\n".join([head, *(_line(r) for r in rows)])


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['cards']:>12,} {r['requests']:>9} {r['non_200']:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
        f" {r['p99_ratio']:>7.3f} {r['median_round_p99_ratio']:>7.3f} {r['median_paired_p99_ratio']:>7.3f}"
        f" {r['median_cpu_ms_per_req']:>11.3f} {r['cpu_ratio']:>6.3f}  {'yes' if r['within_target'] else 'NO ':>5}"
        f"  {' '.join(f'{p:.0f}' for p in r['round_p99_ms'])}"
    )


def prepare(args: argparse.Namespace, master: bytes, pool: list[Any]) -> list[Size]:
    sizes = []
    for cards in args.sizes:
        url = _database(cards)
        say(f"populating {url.rsplit('/', 1)[-1]} with {cards:,} cards ...")
        populated = asyncio.run(populate(url, cards, args.batch, args.procs, master, pool))
        settle = time.perf_counter()
        asyncio.run(_settle(url))
        say(
            f"  {populated['seconds']} s, {populated['cards_per_s']} cards/s;"
            f" VACUUM and CHECKPOINT {time.perf_counter() - settle:.0f} s"
        )
        sizes.append(Size(cards, url, populated))
    return sizes


def serve_all(sizes: list[Size], args: argparse.Namespace, master: bytes, pool: list[Any], stack: Any) -> None:
    """A server on every population, its clients set up, and every code its rounds verify minted ahead."""
    needed = args.rounds * int(args.rate * (args.seconds + WARMUP_S))
    for size in sizes:
        size.env = _env(size.url, master, Path(stack.enter_context(tempfile.TemporaryDirectory())) / "data")
        stack.callback(forget_redis_keys, size.env)
        size.server = stack.enter_context(serving(size.env))
        staff = set_up(size.server.base_url, size.env, 0)
        devices = population_devices(size.url, pool, args.devices)
        size.factory = Factory(Cast(staff.merchant, staff.channel, devices), size.server.port)
        size.codes, mint_rps = mint_codes(size.factory, needed, CONNS)
        say(
            f"{size.cards:,} cards: ecard serve pid {size.server.proc.pid}, {len(devices)} population devices,"
            f" {len(size.codes)} codes minted at {mint_rps:.0f}/s"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    self_check()
    stamp, started = time.strftime("%Y%m%dT%H%M%S"), time.monotonic()
    say(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    master, pool = os.urandom(32), key_pool()
    sizes = prepare(args, master, pool)
    try:
        with contextlib.ExitStack() as stack:
            serve_all(sizes, args, master, pool, stack)
            for round_no in range(1, args.rounds + 1):
                # alternate the order, so that no size always follows the other
                for size in sizes if round_no % 2 else reversed(sizes):
                    size.rounds.append(measure(size, args.rate, args.seconds, round_no))
    finally:
        if not args.keep:
            for size in sizes:
                _drop(size.url)
    rows = summary(sizes)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "load/population_p99.py", *(argv if argv is not None else sys.argv[1:])]),
        "rate": args.rate,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "devices": args.devices,
        "tolerance": TOLERANCE,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "wall_s": round(time.monotonic() - started, 1),
        "populations": [size.populated for size in sizes],
        "summary": rows,
        "rounds_measured": [r for size in sizes for r in size.rounds],
    }
    say("\n" + render(rows))
    path = save(results, f"{stamp}-population-p99")
    say(f"\nresults: {path} (wall {results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

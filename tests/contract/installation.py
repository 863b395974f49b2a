"""A whole installation as integrators meet it: `ecard serve` as `cq`, its partner `sc`, the 渝快办 and bank stand-ins.

Each a real process on a loopback port, each ecard on a database of its own; `cq` knows `sc` and `ykb` as partners.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.live import LiveEcard
from tests.standins import StandinBank, StandinYukuai


@dataclass
class Installation:
    cq: LiveEcard
    sc: LiveEcard
    yukuai: StandinYukuai
    bank: StandinBank


def _partner(live: LiveEcard, *args: str) -> None:
    run = live.cli("partners", "add", *args)
    assert run.returncode == 0, run.stderr


@contextlib.contextmanager
def installed(service_urls: tuple[str, str], folder: Path, name: str, **env: str) -> Iterator[Installation]:
    """Started for the block (databases `<test db>_<name>_cq` and `_sc`), stopped at its end whatever happened."""
    quick = {
        "ECARD_PARTNER_BREAKER_COOLDOWN_S": "1",
        "ECARD_PARTNER_REFRESH_S": "5",
        # merchants' callback servers are on loopback here
        "ECARD_CALLBACK_ALLOW_LOOPBACK": "1",
        **env,
    }
    bank = StandinBank(folder / "bank")
    cq = asyncio.run(
        LiveEcard.create("cq", service_urls, folder / "cq", name=f"{name}_cq", ECARD_BANK_URL=bank.base, **quick)
    )
    sc = asyncio.run(LiveEcard.create("sc", service_urls, folder / "sc", name=f"{name}_sc", **quick))
    yukuai = StandinYukuai(folder, f"{cq.base}/v1/issuer/request-keys")
    cq.env["ECARD_YUKUAI_URL"] = yukuai.base
    try:
        bank.start()
        cq.start()
        sc.start()
        yukuai.start()
        _partner(cq, "--issuer", "sc", "--name", "四川省电子社保卡", "--base-url", sc.base)
        _partner(sc, "--issuer", "cq", "--name", "重庆市电子社保卡", "--base-url", cq.base)
        _partner(cq, "--issuer", "ykb", "--name", "渝快办", "--base-url", yukuai.base, "--region", "cq")
        yield Installation(cq, sc, yukuai, bank)
    finally:
        for stop in (yukuai.kill, sc.stop, cq.stop, bank.kill):
            with contextlib.suppress(Exception):
                stop()

"""Where the app's time goes, from a py-spy collapsed file (`load/run.py --profile` writes them): each sample goes
to the first category, walking from the innermost frame outwards, whose pattern one of its frames matches.

    python load/breakdown.py load/results/<stamp>-profile/verification.txt
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (category, substrings of a frame), innermost match wins; order only breaks ties within one frame
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("garbage collector (with --native)", ("gc_collect_main", "collect_with_callback", "gc_collect")),
    ("crypto: Ed25519 / P-256 / AEAD", ("nacl/", "cryptography/", "ecard/kit/ed25519.py", "ecard/kit/crypto.py")),
    ("code decoding (base45, CBOR)", ("base45/", "cbor2/", "ecard/codes/token.py")),
    ("PostgreSQL client (asyncpg)", ("asyncpg/",)),
    ("Redis client (redis-py)", ("redis/",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("logging", ("logging/", "ecard/kit/logs.py")),
    ("JSON (msgspec, json)", ("msgspec/", "json/")),
    ("request signature check (ecard)", ("ecard/kit/signing.py", "ecard/clients/")),
    ("verification rules (ecard)", ("ecard/verify/", "ecard/codes/", "ecard/catalog/", "ecard/merchants/")),
    ("Litestar (routing, DI, responses)", ("litestar/",)),
    ("anyio task groups", ("anyio/",)),
    ("uvicorn / httptools (HTTP)", ("uvicorn/", "httptools/")),
    ("asyncio event loop", ("asyncio/", "uvloop/")),
)


def breakdown(collapsed: str) -> tuple[int, Counter[str]]:
    total, shares = 0, Counter[str]()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        shares[_category(frames)] += n
    return total, shares


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in CATEGORIES:
            if any(p in frame for p in patterns):
                return name
    return "other (ecard, stdlib)"


def main(argv: list[str]) -> int:
    for path in argv:
        total, shares = breakdown(Path(path).read_text())
        print(f"{path}: {total} samples")
        for name, n in shares.most_common():
            print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

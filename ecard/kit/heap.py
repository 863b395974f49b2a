"""The garbage collector of a serving process, settled once the app has started.

Everything alive after startup (modules, the app, its routes, pools, keys) lives until shutdown, yet every
full collection walks all of it again: tens of milliseconds during which no request is served, the stall
behind the verification p99 (load/PROFILE.md). `settle` hands it to gc.freeze, so that collections walk only
what requests allocate, and lets the young generation grow larger before it is collected."""

from __future__ import annotations

import gc

# allocations (minus deallocations) before a young collection; CPython's default is 700
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Collect once, then keep everything still alive out of every later collection."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def unsettle() -> None:
    """At shutdown: the frozen objects are the collector's again, and the default threshold is back."""
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(700, middle, old)

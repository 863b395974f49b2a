"""Fixtures of the operators' tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.operators.support import Addresses
from tests.support import World


@pytest.fixture
async def addresses(world: World) -> AsyncIterator[Addresses]:
    async with contextlib.AsyncExitStack() as stack:
        yield Addresses(world, stack)

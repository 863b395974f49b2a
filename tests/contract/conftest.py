"""The contract tests' service: the app over ASGI with the stand-in bank as a real process, and the integrator."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from ecard.config import Settings
from tests.contract.support import Integrator
from tests.standins import StandinBank
from tests.support import World

# the portal's issuer identifier is the URL the test client reaches the service at
BASE = "http://testserver.local"


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinBank]:
    with StandinBank.running(tmp_path_factory.mktemp("contract-bank")) as standin:
        yield standin


@pytest.fixture
def settings(settings: Settings, bank: StandinBank) -> Settings:
    return dataclasses.replace(
        settings,
        bank_url=bank.base,
        public_url=BASE,
        callback_base_delay_s=0.05,
        callback_poll_s=0.05,
        callback_timeout_s=2.0,
        # the merchant's callback server runs on loopback here; in service notify_url must be public https
        callback_allow_loopback=True,
        payment_recovery_grace_s=3600.0,
        payment_recovery_interval_s=3600.0,
    )


@pytest.fixture
def api(world: World) -> Integrator:
    return Integrator(world)

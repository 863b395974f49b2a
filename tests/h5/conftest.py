"""Citizen pages (H5): a few ticketed enrolments per source address, so that the limit is reached in a test."""

from __future__ import annotations

import dataclasses

import pytest

from ecard.config import Settings

REDEEMS_PER_SOURCE = 5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, h5_ticket_redeems_per_source=REDEEMS_PER_SOURCE)

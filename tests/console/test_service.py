"""The console's own rules, directly: masking, and CSRF tokens bound to one session."""

from __future__ import annotations

import os
from typing import cast

import asyncpg
import pytest

from ecard.cards import Cards
from ecard.console import mask_id_number
from ecard.console.service import Console, bar_chart
from ecard.kit.crypto import Keys
from ecard.kit.refusal import Refusal


def console() -> Console:
    keys = Keys.from_master(os.urandom(32))
    # neither the pool nor the cards service is used by these rules
    return Console(cast("asyncpg.Pool", None), keys.csrf_key, cast("Cards", None), 3600)


def test_an_id_number_is_masked_but_for_its_region_and_last_four() -> None:
    assert mask_id_number("50010119900101123X") == "500101********123X"
    assert mask_id_number("1234") == "****"


def test_a_sessions_csrf_token_opens_only_that_session() -> None:
    desk = console()
    token = desk.csrf_for("session-a")
    desk.check_csrf("session-a", token)
    for session, sent in (
        ("session-b", token),
        ("session-a", ""),
        ("session-a", token[:-1] + "~"),
        ("session-a", "令牌"),
    ):
        with pytest.raises(Refusal) as refused:
            desk.check_csrf(session, sent)
        assert refused.value.status == 403


def test_the_login_forms_token_belongs_to_its_cookie() -> None:
    desk = console()
    cookie, field = desk.login_csrf()
    desk.check_login_csrf(cookie, field)
    other, _ = desk.login_csrf()
    for pair in ((other, field), ("", field), (cookie, "")):
        with pytest.raises(Refusal):
            desk.check_login_csrf(*pair)


def test_another_installations_key_makes_other_tokens() -> None:
    assert console().csrf_for("session-a") != console().csrf_for("session-a")


def test_bars_stand_on_the_baseline_and_the_target_marker_sits_at_its_value() -> None:
    chart = bar_chart("c", "t", [("a", 3, 1.5), ("b", 0, None)], 3)
    full, empty = chart.bars
    assert full.y + full.height == chart.baseline_y
    assert empty.height == 0
    assert full.target_y == round((full.y + chart.baseline_y) / 2, 1)
    assert empty.target_y is None

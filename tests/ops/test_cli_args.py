"""The command line reads as the README writes it."""

from __future__ import annotations

import pytest

from ecard.cli import parse_args


def test_call_takes_its_body_before_or_after_its_options() -> None:
    after = parse_args(["call", "POST", "http://h/v1/codes", "--key", "phone.jwk.json", "--keyid", "key_1", "{}"])
    before = parse_args(["call", "POST", "http://h/v1/codes", "{}", "--key", "phone.jwk.json", "--keyid", "key_1"])
    for args in (after, before):
        assert (args.method, args.url, args.body, args.key, args.keyid) == (
            "POST",
            "http://h/v1/codes",
            "{}",
            "phone.jwk.json",
            "key_1",
        )


def test_stray_arguments_are_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["call", "POST", "http://h/v1/codes", "--key", "k.json", "{}", "extra"])
    with pytest.raises(SystemExit):
        parse_args(["keys", "list", "surplus"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_kid_that_begins_with_a_dash_is_taken_after_a_double_dash() -> None:
    assert parse_args(["keys", "revoke", "--", "-AbC_dEf0g"]).kid == "-AbC_dEf0g"

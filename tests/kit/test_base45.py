"""Base45 (RFC 9285) as codes are written and read: the RFC's examples, the `base45` package's answers, refusals."""

from __future__ import annotations

import random

import base45 as reference
import pytest

from ecard.kit.base45 import b45decode, b45encode

# RFC 9285, section 4.3 and 4.4
EXAMPLES = [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0")]


@pytest.mark.parametrize(("data", "text"), EXAMPLES)
def test_the_rfc_examples(data: bytes, text: str) -> None:
    assert b45encode(data) == text
    assert b45decode(text) == data


def test_every_length_round_trips_as_the_package_writes_it() -> None:
    rng = random.Random(45)
    for length in [*range(64), 150, 151, 400]:
        for _ in range(20):
            data = rng.randbytes(length)
            assert b45encode(data) == reference.b45encode(data).decode()
            assert b45decode(b45encode(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        "GGW",  # a group above 0xFFFF
        "Z:",  # a trailing pair above 0xFF
        "BB8A",  # one character left over
        "bb8",  # lower case is not base45
        "BB8é",  # nor is anything outside ASCII
        "BB\x008",
    ],
)
def test_what_is_not_base45_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid base45"):
        b45decode(text)
    with pytest.raises(ValueError, match="Invalid base45"):
        reference.b45decode(text)


def test_random_text_is_read_exactly_as_the_package_reads_it() -> None:
    rng = random.Random(9285)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:a\n"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        try:
            expected: bytes | None = reference.b45decode(text)
        except ValueError:
            expected = None
        try:
            got: bytes | None = b45decode(text)
        except ValueError:
            got = None
        assert got == expected, text

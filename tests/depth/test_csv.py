"""The spreadsheet cells of the depth report's CSV (kit/csvsafe): quoted, and never run as a formula."""

from __future__ import annotations

import csv
import io

import pytest

from ecard.kit import csvsafe


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "=cmd|' /C calc'!A0"])
def test_text_a_spreadsheet_would_run_is_prefixed_with_a_quote(text: str) -> None:
    written = csvsafe.write(["cell"], [[text]])

    [_, row] = list(csv.reader(io.StringIO(written, newline="")))
    assert row == ["'" + text]


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, ""), (True, "true"), (False, "false"), (-3, "-3"), (0.6667, "0.6667"), ("a=b", "a=b"), ("", "")],
)
def test_values_other_than_risky_text_are_written_as_they_are(value: object, cell: str) -> None:
    assert csvsafe.cell(value) == cell


def test_every_cell_is_quoted_and_quotes_inside_are_doubled() -> None:
    written = csvsafe.write(["a", "b"], [[1, 'say "hi", then go'], [None, "x"]])

    assert written == '"a","b"\r\n"1","say ""hi"", then go"\r\n"","x"\r\n'

"""The fast profile of the fuzz (tests/contract/fuzz.py): every operation, generated requests, no 5xx."""

from __future__ import annotations

from pathlib import Path

from tests.contract.fuzz import QUICK, fuzz, report


def test_no_generated_request_to_any_operation_gets_a_server_error(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    outcome = fuzz(service_urls, tmp_path, QUICK, name="fuzz_quick")

    assert outcome.cases >= 300, outcome.log
    assert outcome.documented, outcome.log
    assert outcome.documented <= set(outcome.by_operation), report(outcome)
    assert outcome.server_errors == [], report(outcome)
    # the signed routes were reached past their signature check: bodies were read and refused, some accepted
    assert outcome.by_operation["POST /v1/verifications"][200] > 0, report(outcome, by_operation=True)
    assert outcome.by_operation["POST /v1/bills"][400] > 0, report(outcome, by_operation=True)

"""The service's own surface: health, readiness, metrics, the OpenAPI document and edge refusals."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support import World, problem

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _metrics(world: World) -> Samples:
    answer = await world.client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


async def test_healthz_answers_while_the_process_is_up(world: World) -> None:
    answer = await world.client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_readyz_reports_database_and_cache_reachable(world: World) -> None:
    answer = await world.client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "database": "ok", "cache": "ok"}


async def test_metrics_count_codes_verifications_by_result_and_their_latency(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    device = await world.device("张小三")
    before = await _metrics(world)

    code = await world.code(device)
    accepted = await world.verify(merchant, code, "wl-030")
    assert accepted.status_code == 200, accepted.text
    replayed = await world.verify(merchant, code, "wl-030")
    assert problem(replayed) == (409, "code_already_used")

    after = await _metrics(world)
    verifications = "ecard_verifications_total"
    assert _value(after, verifications, result="accepted") - _value(before, verifications, result="accepted") == 1
    assert (
        _value(after, verifications, result="code_already_used")
        - _value(before, verifications, result="code_already_used")
        == 1
    )
    issued = "ecard_codes_issued_total"
    assert _value(after, issued, format="json") - _value(before, issued, format="json") == 1
    # Both decisions were timed: the decision histogram and the per-route request histogram.
    assert _value(after, "ecard_verification_seconds_count") - _value(before, "ecard_verification_seconds_count") == 2
    route = {"route": "/v1/verifications", "method": "POST"}
    assert (
        _total(after, "ecard_request_seconds_count", **route, status="200")
        - _total(before, "ecard_request_seconds_count", **route, status="200")
        == 1
    )
    assert (
        _total(after, "ecard_request_seconds_count", **route, status="409")
        - _total(before, "ecard_request_seconds_count", **route, status="409")
        == 1
    )
    buckets = {labels: value for (name, labels), value in after.items() if name == "ecard_verification_seconds_bucket"}
    assert buckets[frozenset({("le", "+Inf")})] == _value(after, "ecard_verification_seconds_count")


async def test_metrics_are_prometheus_text_with_help_and_type(world: World) -> None:
    answer = await world.client.get("/metrics")
    assert answer.status_code == 200
    assert "# TYPE ecard_verifications_total counter" in answer.text
    assert "# TYPE ecard_codes_issued_total counter" in answer.text
    assert "# TYPE ecard_verification_seconds histogram" in answer.text
    assert "# TYPE ecard_request_seconds histogram" in answer.text


async def test_openapi_lists_the_published_routes(world: World) -> None:
    answer = await world.client.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    paths = answer.json()["paths"]
    for path, method in (
        ("/v1/verifications", "post"),
        ("/v1/codes", "post"),
        ("/v1/enrolments", "post"),
        ("/v1/issuer/keys", "get"),
        ("/v1/admin/sessions", "post"),
        ("/v1/admin/cardholders", "post"),
        ("/v1/admin/merchants", "post"),
        ("/v1/admin/channels", "post"),
        ("/v1/admin/cards/{card_id}/status", "post"),
        ("/v1/devices/{device_id}/pin", "put"),
        ("/v1/cards/{card_id}/report-lost", "post"),
        ("/v1/cards/{card_id}/verifications", "get"),
        ("/v1/catalog/items", "get"),
        ("/v1/catalog/items/{item_code}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ):
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from the OpenAPI document"


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


async def test_openapi_documents_the_verification_refusals_as_problem_details(world: World) -> None:
    document = (await world.client.get("/schema/openapi.json")).json()
    responses = document["paths"]["/v1/verifications"]["post"]["responses"]
    assert "200" in responses
    expected = {
        "400": "malformed_code",
        "401": "signature_missing",
        "403": "merchant_not_entitled",
        "409": "code_already_used",
        "503": "cache_unavailable",
    }
    for status, one_code in expected.items():
        assert status in responses, f"{status} not documented"
        content = responses[status]["content"]
        assert list(content) == ["application/problem+json"]
        schema = _resolve(document, content["application/problem+json"]["schema"])
        assert {"code", "status", "title", "detail", "type"} <= set(schema["properties"])
        assert one_code in responses[status]["description"]


async def test_unknown_path_is_a_not_found_problem(world: World) -> None:
    answer = await world.client.get("/v1/no-such-thing")
    assert problem(answer) == (404, "not_found")


async def test_wrong_method_is_a_method_not_allowed_problem(world: World) -> None:
    answer = await world.client.get("/v1/verifications")
    assert problem(answer) == (405, "method_not_allowed")
    answer = await world.client.delete("/healthz")
    assert problem(answer) == (405, "method_not_allowed")


async def test_a_body_over_64_kib_is_refused_before_anything_reads_it(world: World) -> None:
    merchant = await world.merchant(["wl-030"])
    oversized = {"code": "EC1:" + "A" * (64 * 1024), "item_code": "wl-030"}
    answer = await world.signed(merchant, "POST", "/v1/verifications", oversized)
    assert problem(answer) == (413, "request_too_large")
    # A body just under the limit is read and judged on its merits.
    fits = {"code": "EC1:AAAA", "item_code": "wl-030", "place": {"note": "A" * (60 * 1024)}}
    answer = await world.signed(merchant, "POST", "/v1/verifications", fits)
    assert problem(answer) == (400, "malformed_code")

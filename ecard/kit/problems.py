"""Refusals and their RFC 9457 problem-details form at the HTTP edge."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from ecard.kit.refusal import STATUS_OF, Refusal

log = logging.getLogger("ecard.problems")

PROBLEM_JSON = "application/problem+json"
# Where a handler leaves the problem code of its answer, so that the access log can say what was refused.
PROBLEM_CODE_STATE = "ecard.problem_code"


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details with the stable machine-readable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str


def problem_response(
    code: str, detail: str, status: int, extra: Mapping[str, Any] | None = None, retry_after: int | None = None
) -> Response[Any]:
    body: dict[str, Any] = {
        "type": f"https://ecard.cq.gov.cn/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update(extra)
    # a 503 without its own estimate is an outage or a shed request: asking again in a second is fair
    if retry_after is None and status == 503:
        retry_after = 1
    headers = {"Retry-After": str(max(1, retry_after))} if retry_after is not None else None
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _note(request: Request[Any, Any, Any], code: str) -> None:
    request.scope.setdefault("state", {})[PROBLEM_CODE_STATE] = code


def refusal_handler(request: Request[Any, Any, Any], exc: Refusal) -> Response[Any]:
    _note(request, exc.code)
    return problem_response(exc.code, exc.detail, exc.status, exc.extra, exc.retry_after)


# msgspec reports a missing or unknown field against the whole body ("data"), naming the field in its message.
_FIELD_IN_MESSAGE = re.compile(r"(?:missing required field|contains unknown field) `([^`]{1,64})`")


def _offending_field(entry: dict[str, Any]) -> str | None:
    key = str(entry.get("key") or "")
    if key and key != "data":
        return key
    named = _FIELD_IN_MESSAGE.search(str(entry.get("message", "")))
    return named.group(1) if named else None


def validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    _note(request, "invalid_request")
    # Litestar names the offending field in `extra`; the value itself is never echoed back.
    entries = [e for e in exc.extra if isinstance(e, dict)] if isinstance(exc.extra, list) else []
    fields = [field for field in map(_offending_field, entries) if field]
    messages = [str(e.get("message", ""))[:200] for e in entries]
    detail = f"invalid field: {', '.join(fields)}" if fields else "request body is not valid JSON of the expected shape"
    extra: dict[str, Any] = {"fields": fields}
    if messages:
        extra["errors"] = messages
    return problem_response("invalid_request", detail, 400, extra)


def not_utf8_handler(request: Request[Any, Any, Any], _: UnicodeDecodeError) -> Response[Any]:
    # msgspec raises UnicodeDecodeError, not a DecodeError, for a JSON string that is not UTF-8, and Litestar
    # lets it through as a 500; for a client it is one more body that is not valid JSON.
    _note(request, "invalid_request")
    return problem_response("invalid_request", "request body is not valid UTF-8 JSON", 400, {"fields": []})


def _has_body(request: Request[Any, Any, Any]) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return "transfer-encoding" in request.headers or (length.isdigit() and int(length) > 0)


def too_deep_handler(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec (Litestar's JSON decoding, and a room's own typed decoding) gives up on arrays and objects nested
    # about a thousand deep with a RecursionError, which would otherwise be a 500; no request of ours nests so
    if not _has_body(request):
        return internal_error_handler(request, exc)
    _note(request, "invalid_request")
    return problem_response("invalid_request", "request body is nested too deeply", 400, {"fields": []})


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        413: "request_too_large",
    }.get(status, "invalid_request" if status < 500 else "internal_error")
    _note(request, code)
    detail = "no such resource" if isinstance(exc, NotFoundException) else str(exc.detail or code)
    return problem_response(code, detail[:300], status)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    from ecard.kit.infra import unavailable_code  # noqa: PLC0415 - avoids an import cycle with infra

    code = unavailable_code(exc)
    _note(request, code or "internal_error")
    if code == "overloaded":
        return problem_response(code, "the service is busy; try again shortly", 503)
    if code is not None:
        log.warning("dependency unavailable", extra={"code": code, "path": request.url.path})
        return problem_response(code, "a backing service is unreachable; try again shortly", 503)
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path, "error_type": type(exc).__name__})
    return problem_response("internal_error", "internal error", HTTP_500_INTERNAL_SERVER_ERROR)


def problems(*codes: str) -> dict[int, ResponseSpec]:
    """OpenAPI response entries for the refusals a route can give."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_OF[code], []).append(code)
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description="Problem details; `code` is one of: " + ", ".join(sorted(names)),
        )
        for status, names in by_status.items()
    }

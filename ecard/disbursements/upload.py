"""A batch's body as JSON or CSV, into its header and a stream of rows; malformed input is `invalid_request`."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import msgspec

from ecard.disbursements.models import BatchHeader, NewBatch, NewRow
from ecard.kit.refusal import Refusal

CSV_HEADER = ["out_row_no", "id_number", "name", "amount_fen", "memo"]
_PATH = re.compile(r"at `\$\.?([^`]*)`")


def _invalid(exc: msgspec.ValidationError | msgspec.DecodeError, where: str = "") -> Refusal:
    found = _PATH.search(str(exc))
    field = found.group(1) if found else ""
    fields = [field] if field else []
    # msgspec's message names the field and the expectation, never the value
    detail = str(exc).split(" - at ")[0][:200]
    return Refusal("invalid_request", f"{where}{detail}", extra={"fields": fields})


def json_batch(body: bytes) -> tuple[BatchHeader, list[NewRow]]:
    try:
        batch = msgspec.json.decode(body, type=NewBatch)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from exc
    return batch.header(), batch.rows


def csv_header(out_batch_no: str, item_code: str, description: str, notify_url: str) -> BatchHeader:
    """The batch's fields, from the query of a CSV upload."""
    fields = {
        "out_batch_no": out_batch_no,
        "item_code": item_code,
        "description": description,
        "notify_url": notify_url,
    }
    try:
        return msgspec.convert(fields, BatchHeader)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from exc


def csv_rows(body: bytes) -> Iterator[NewRow]:
    """Rows one at a time as the CSV is read (header `out_row_no,id_number,name,amount_fen,memo`)."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != CSV_HEADER:
            raise Refusal("invalid_request", "the CSV header must be " + ",".join(CSV_HEADER), extra={"fields": []})
        for fields in reader:
            if not fields:
                continue
            line = reader.line_num
            if len(fields) != len(CSV_HEADER):
                raise Refusal(
                    "invalid_request", f"line {line}: {len(CSV_HEADER)} fields expected", extra={"fields": []}
                )
            try:
                yield msgspec.convert(dict(zip(CSV_HEADER, fields, strict=True)), NewRow)
            except msgspec.ValidationError as exc:
                raise _invalid(exc, f"line {line}: ") from exc
    except csv.Error as exc:
        raise Refusal("invalid_request", f"the CSV is malformed near line {reader.line_num}") from exc
    except UnicodeDecodeError as exc:
        raise Refusal("invalid_request", "the CSV is not UTF-8") from exc

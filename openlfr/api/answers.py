"""Answers that are files rather than JSON: images of an alert or a camera, and CSV exports of the record."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from openlfr.errors import NotFound

# The bytes' schema too: a generated client reads the answer as a file (a schema-less content it leaves out).
JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "a JPEG image"}
}
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "a CSV file"}
}


def jpeg(data: bytes | None, what: str) -> Response:
    if data is None:
        raise NotFound(f"the {what} is not available (purged, or never kept)")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

"""Uploaded photos, checked before anything is decoded: at most ``MAX_FILES`` files, each within the size limit,
a plain file name (no folders, no ``..``, no control characters) with an image suffix, and a picture whose size,
read from its header, is within ``max_upload_pixels``. Enrolling them is the application layer's
(``openlfr.services.enrolment.enrol_uploads``).

Forms with files are parsed here rather than by FastAPI's ``File()``: Starlette spools an uploaded file of more
than 1 MB to the system temp folder, where a server killed mid-request would leave it for good. ``InMemoryForm``
keeps every file in memory (its spool limit is above the size a photo may have, and a larger one is refused while
it streams in), and the route authenticates before the body is read at all.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from openlfr.errors import UploadRefused, UploadTooLarge
from openlfr.services.enrolment import Upload

MAX_FILES = 10
MAX_FIELD_BYTES = 16_384
SAFE_NAME = re.compile(r"^[\w][\w .()+-]{0,199}$")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def safe_filename(raw: str | None) -> str:
    """The client's file name if it is a plain name with an image suffix; refuses anything path-like."""
    name = raw or ""
    if not name or "\x00" in name or len(name) > 200:
        raise UploadRefused("each upload needs a plain file name (at most 200 characters)")
    if PurePosixPath(name).name != name or PureWindowsPath(name).name != name or name in (".", ".."):
        raise UploadRefused(f"file name {name!r} contains a path; send the file name only")
    if not SAFE_NAME.match(name):
        raise UploadRefused(f"file name {name!r} has characters that are not allowed")
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        raise UploadRefused(f"{name!r} is not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return name


def check_picture_size(name: str, data: bytes, max_pixels: int) -> None:
    """Refuse a picture larger than ``max_pixels`` from its header alone (nothing decoded: a small file can
    declare a huge picture), or a file that is no picture."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as picture:
                width, height = picture.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise UploadRefused(f"{name} is not a picture this system can read") from None
    if width * height > max_pixels:
        raise UploadTooLarge(
            f"{name} is {width}x{height} ({width * height:,} pixels); at most {max_pixels:,} pixels are accepted"
        )


class InMemoryForm(MultiPartParser):
    """Starlette's multipart parser with every file part held in memory: refused once one passes
    ``max_file_bytes``, so a spooled file never reaches its limit and never rolls over to the disk."""

    def __init__(self, request: Request, max_files: int, max_fields: int, max_file_bytes: int) -> None:
        headers: Headers = request.headers
        super().__init__(
            headers, request.stream(), max_files=max_files, max_fields=max_fields, max_part_size=MAX_FIELD_BYTES
        )
        self.spool_max_size = max_file_bytes + 1
        self.max_file_bytes = max_file_bytes
        self.file_bytes = 0

    def on_part_begin(self) -> None:
        self.file_bytes = 0
        super().on_part_begin()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                name = self._current_part.file.filename or "a photo"
                raise UploadTooLarge(f"{name} is larger than {self.max_file_bytes:,} bytes")
        super().on_part_data(data, start, end)


async def read_form(request: Request, max_files: int, max_fields: int, max_file_bytes: int, asked: str) -> FormData:
    """The request's multipart form, files in memory; ``asked`` says what to send when it is not a form."""
    kind = request.headers.get("content-type", "")
    try:
        if kind.startswith("application/x-www-form-urlencoded"):  # fields only: answered by what is missing
            return await request.form(max_files=0, max_fields=max_fields, max_part_size=MAX_FIELD_BYTES)
        if not kind.startswith("multipart/form-data"):
            raise UploadRefused(f"send multipart/form-data: {asked}")
        return await InMemoryForm(request, max_files, max_fields, max_file_bytes).parse()
    except MultiPartException as exc:
        raise UploadRefused(f"the form cannot be read: {exc.message}") from None


class EnrolForm(BaseModel):
    """The text fields of an enrolment upload."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(min_length=1, max_length=100)
    display_name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=32)
    reason: str = Field("", max_length=5000)
    legal_basis: str = Field("", max_length=5000)


def multipart_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its form with ``read_form`` (FastAPI cannot see it)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


ENROL_FORM_SCHEMA = multipart_body(
    ["person", "display_name", "category", "images"],
    {
        **EnrolForm.model_json_schema()["properties"],
        "images": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "maxItems": MAX_FILES,
            "description": "the reference photos",
        },
    },
)


async def read_enrol_form(request: Request, max_bytes: int, max_pixels: int) -> tuple[EnrolForm, list[Upload]]:
    """An enrolment form: its fields (422 naming the bad ones, as for JSON) and its photos, held in memory."""
    fields = set(EnrolForm.model_fields)
    form = await read_form(request, MAX_FILES, len(fields), max_bytes, "the photos as 'images' and the fields")
    try:
        files = [item for item in form.getlist("images") if isinstance(item, UploadFile)]
        unknown = sorted(set(form.keys()) - fields - {"images"})
        problems: list[dict[str, Any]] = [
            {"type": "extra_forbidden", "loc": ("body", name), "msg": "Extra inputs are not permitted"}
            for name in unknown
        ]
        try:
            details = EnrolForm.model_validate({k: v for k, v in form.items() if k in fields and isinstance(v, str)})
        except ValidationError as invalid:
            problems += [dict(error) | {"loc": ("body", *error["loc"])} for error in invalid.errors()]
        if not files:
            problems.append({"type": "missing", "loc": ("body", "images"), "msg": "Field required"})
        if problems:
            raise RequestValidationError(problems)
        return details, await read_uploads(files, max_bytes, max_pixels)
    finally:
        await form.close()


async def read_uploads(files: list[UploadFile], max_bytes: int, max_pixels: int) -> list[Upload]:
    if not files:
        raise UploadRefused("send at least one photo")
    if len(files) > MAX_FILES:
        raise UploadRefused(f"at most {MAX_FILES} photos at a time")
    out = []
    for upload in files:
        name = safe_filename(upload.filename)
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise UploadTooLarge(f"{name} is larger than {max_bytes:,} bytes")
        if not data:
            raise UploadRefused(f"{name} is empty")
        check_picture_size(name, data, max_pixels)
        out.append(Upload(name, data))
    return out

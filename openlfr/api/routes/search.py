"""Photo search: one face of an uploaded photo against a watchlist (``openlfr.services.photo_search``), and the
reference pictures its answer points at.

The upload is parsed here rather than by FastAPI's ``File()``: Starlette spools an uploaded file of more than 1 MB
to a temporary file on disk, and a probe must never touch the disk. ``InMemoryForm`` keeps the one photo in
memory (its spool limit is above the size a photo may have, and a larger one is refused while it streams in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from openlfr.api import answers
from openlfr.api.deps import DB, PhotoSearcherPrincipal, committed, context, server
from openlfr.api.enrol_upload import check_picture_size, safe_filename
from openlfr.api.schemas import PhotoSearchOut
from openlfr.enrolment.gate import parse_face_choice
from openlfr.errors import UploadRefused, UploadTooLarge
from openlfr.services import photo_search
from openlfr.services.photo_search import SearchRequest
from openlfr.vision.image_io import decode_rgb

router = APIRouter(prefix="/api", tags=["search"])

FIELDS = ("watchlist", "reason", "top", "face", "investigation")
MAX_FIELD_BYTES = 16_384
FORM_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "watchlist", "reason"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "the photo"},
                        "watchlist": {"type": "string"},
                        "reason": {"type": "string", "minLength": photo_search.MIN_REASON_CHARS},
                        "top": {"type": "integer", "minimum": 1, "maximum": photo_search.MAX_TOP, "default": 5},
                        "face": {"type": "string", "description": "N (from the left) or 'largest'"},
                        "investigation": {"type": "string", "description": "record the search for this reference"},
                    },
                }
            }
        },
    }
}


class InMemoryForm(MultiPartParser):
    """Starlette's multipart parser with the file part held in memory: refused once it passes ``max_file_bytes``,
    so the spooled file never reaches its limit and never rolls over to the disk."""

    def __init__(self, headers: Headers, request: Request, max_file_bytes: int) -> None:
        super().__init__(headers, request.stream(), max_files=1, max_fields=len(FIELDS), max_part_size=MAX_FIELD_BYTES)
        self.spool_max_size = max_file_bytes + 1
        self.max_file_bytes = max_file_bytes
        self.file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                raise UploadTooLarge(f"the photo is larger than {self.max_file_bytes:,} bytes")
        super().on_part_data(data, start, end)


@dataclass(frozen=True)
class SearchForm:
    request: SearchRequest
    image_name: str
    image: bytes


async def read_search_form(request: Request, max_file_bytes: int) -> SearchForm:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadRefused(f"send multipart/form-data: the photo as 'image', and the fields {', '.join(FIELDS)}")
    try:
        form = await InMemoryForm(request.headers, request, max_file_bytes).parse()
    except MultiPartException as exc:
        raise UploadRefused(f"the form cannot be read: {exc.message}") from None
    unknown = sorted(set(form.keys()) - {*FIELDS, "image"})
    if unknown:
        raise UploadRefused(f"unknown field(s): {', '.join(unknown)}")
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise UploadRefused("send the photo to search with as the file field 'image'")
    data = await upload.read()
    await upload.close()
    if not data:
        raise UploadRefused("the photo is empty")
    text = {name: value for name in FIELDS if isinstance(value := form.get(name), str)}
    try:
        top = int(text.get("top") or 5)
    except ValueError:
        raise UploadRefused("top must be a whole number") from None
    try:
        face = parse_face_choice(text.get("face") or None)
    except ValueError as exc:
        raise UploadRefused(str(exc).replace("--face", "face")) from None
    investigation = text.get("investigation") or None
    asked = SearchRequest(text.get("watchlist", ""), text.get("reason", ""), top, face, investigation)
    return SearchForm(asked, safe_filename(upload.filename or "photo.jpg"), data)


@router.post("/search", openapi_extra=FORM_SCHEMA)
async def search(request: Request, principal: PhotoSearcherPrincipal) -> PhotoSearchOut:
    """Search a watchlist's active entries for the face in a photo (roles operator and authoriser). The reason is
    required (20+ characters) and audited; the photo is kept only if the search is recorded for an investigation."""
    state = server(request)
    form = await read_search_form(request, state.settings.max_upload_bytes)
    asked = form.request.checked()  # before the photo is decoded: a refused search does nothing
    check_picture_size(form.image_name, form.image, state.settings.max_upload_pixels)  # from the header alone

    def work() -> PhotoSearchOut:
        pixels = decode_rgb(form.image, form.image_name, state.settings.max_image_pixels)
        engine = photo_search.probe_engine(state.settings)
        with state.sessions() as db, committed(db, context(request, principal), principal) as write:
            result = photo_search.search_photo(write.db, write.ctx, engine, pixels, asked)
        return PhotoSearchOut.model_validate(result.as_dict())

    return await run_in_threadpool(work)


@router.get("/search/references/{image_id}.jpg", response_class=Response, responses=answers.JPEG)
def reference_picture(image_id: int, _: PhotoSearcherPrincipal, db: DB) -> Response:
    """The face picture of a reference photo of someone still listed (a search's candidates point at these)."""
    return answers.jpeg(photo_search.reference_jpeg(db, image_id), "reference image")

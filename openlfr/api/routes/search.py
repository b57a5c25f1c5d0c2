"""Photo search: one face of an uploaded photo against a watchlist (``openlfr.services.photo_search``), and the
reference pictures its answer points at.

The upload is read by ``api.enrol_upload.read_form``, as enrolment's is: the photo stays in memory (a probe must
never touch the disk) and a larger one is refused while it streams in.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from openlfr.api import answers
from openlfr.api.deps import PhotoSearcherPrincipal, own_write, server
from openlfr.api.enrol_upload import check_picture_size, multipart_body, read_form, safe_filename
from openlfr.api.search_schemas import PhotoSearchOut
from openlfr.enrolment.gate import parse_face_choice
from openlfr.errors import NotFound, UploadRefused
from openlfr.services import photo_search
from openlfr.services.photo_search import SearchRequest
from openlfr.vision.image_io import decode_rgb

router = APIRouter(prefix="/api", tags=["search"])

FIELDS = ("watchlist", "reason", "top", "face", "investigation")
FORM_SCHEMA = multipart_body(
    ["image", "watchlist", "reason"],
    {
        "image": {"type": "string", "format": "binary", "description": "the photo"},
        "watchlist": {"type": "string"},
        "reason": {"type": "string", "minLength": photo_search.MIN_REASON_CHARS},
        "top": {"type": "integer", "minimum": 1, "maximum": photo_search.MAX_TOP, "default": 5},
        "face": {"type": "string", "description": "N (from the left) or 'largest'"},
        "investigation": {"type": "string", "description": "record the search for this reference"},
    },
)


@dataclass(frozen=True)
class SearchForm:
    request: SearchRequest
    image_name: str
    image: bytes


async def read_search_form(request: Request, max_file_bytes: int) -> SearchForm:
    asked_for = f"the photo as 'image', and the fields {', '.join(FIELDS)}"
    form = await read_form(request, 1, len(FIELDS), max_file_bytes, asked_for)
    try:
        unknown = sorted(set(form.keys()) - {*FIELDS, "image"})
        if unknown:
            raise UploadRefused(f"unknown field(s): {', '.join(unknown)}")
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise UploadRefused("send the photo to search with as the file field 'image'")
        data = await upload.read()
    finally:
        await form.close()
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
        with own_write(request, principal) as write:
            result = photo_search.search_photo(write.db, write.ctx, engine, pixels, asked)
        return PhotoSearchOut.model_validate(result.as_dict())

    return await run_in_threadpool(work)


@router.get("/search/references/{image_id}.jpg", response_class=Response, responses=answers.JPEG)
def reference_picture(image_id: int, request: Request, principal: PhotoSearcherPrincipal) -> Response:
    """The face picture of a candidate of a photo search you ran (in the last ``OPENLFR_SEARCH_REFERENCE_SECONDS``),
    while its person is still listed; each view, and each refusal, is audited."""
    with own_write(request, principal) as write:  # the audit entry is kept whatever the answer
        picture = photo_search.candidate_reference(write.db, write.ctx, image_id)
    if picture is None:
        minutes = server(request).settings.search_reference_seconds / 60
        raise NotFound(
            "this reference image is not among the candidates of a photo search you ran in the last "
            f"{minutes:g} minutes, or its person is no longer listed: search again to see it"
        )
    return answers.jpeg(picture, "reference image")

"""Live camera pictures for the console: the latest frame of a live camera, every face that raised no alert
pixelated. Held in memory only (``openlfr.runtime.tiles``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from openlfr.api import answers
from openlfr.api.deps import AlertViewerPrincipal, server

router = APIRouter(prefix="/api", tags=["live"])


@router.get("/deployments/{deployment_id}/cameras/{camera}/frame.jpg", response_class=Response, responses=answers.JPEG)
def camera_frame(deployment_id: int, camera: str, request: Request, _: AlertViewerPrincipal) -> Response:
    frame = server(request).tiles.latest(deployment_id, camera)
    return answers.jpeg(frame, "camera picture")

"""What several commands share: options declared once (so each reads and behaves the same everywhere), the
reading of ``--face``, and the console tables are printed on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from openlfr.errors import OpenLFRError

if TYPE_CHECKING:
    from openlfr.enrolment.gate import FaceChoice
    from openlfr.settings import Settings

ByOption = Annotated[
    str | None, typer.Option("--by", metavar="NAME", help="Who is doing this (default: your login name).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
FaceOption = Annotated[
    str | None,
    typer.Option(
        "--face", metavar="N|largest", help="Which face if a photo shows several: N from the left, or 'largest'."
    ),
]
WorkersOption = Annotated[int, typer.Option(min=1, metavar="N", help="Worker processes for embedding.")]


def get_settings() -> Settings:
    """``openlfr.settings.get_settings``, imported when a command runs: pydantic is slow to load and ``--help``
    needs no settings."""
    from openlfr import settings

    return settings.get_settings()


def face_choice(text: str | None) -> FaceChoice:
    """``--face`` as typed: None (the only face), ``largest`` or N from the left; a clear error otherwise."""
    from openlfr.enrolment.gate import parse_face_choice

    try:
        return parse_face_choice(text)
    except ValueError as exc:
        raise OpenLFRError(str(exc)) from None


def wide_console() -> Console:
    """Tables keep their shape when the output is piped (rich assumes 80 columns there)."""
    return Console(width=max(Console().width, 120))

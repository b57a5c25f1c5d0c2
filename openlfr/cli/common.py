"""What several commands share: options declared once (so each reads and behaves the same everywhere), the
reading of ``--face``, and the console tables are printed on."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from openlfr.enrolment.gate import FaceChoice, parse_face_choice
from openlfr.errors import OpenLFRError

ByOption = Annotated[str | None, typer.Option("--by", help="Who is doing this (default: your login name).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
FaceOption = Annotated[
    str | None, typer.Option("--face", help="Which face if a photo shows several: N from the left, or 'largest'.")
]
WorkersOption = Annotated[int, typer.Option(min=1, help="Worker processes for embedding.")]


def face_choice(text: str | None) -> FaceChoice:
    """``--face`` as typed: None (the only face), ``largest`` or N from the left; a clear error otherwise."""
    try:
        return parse_face_choice(text)
    except ValueError as exc:
        raise OpenLFRError(str(exc)) from None


def wide_console() -> Console:
    """Tables keep their shape when the output is piped (rich assumes 80 columns there)."""
    return Console(width=max(Console().width, 120))

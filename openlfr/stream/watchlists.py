"""A watchlist built in memory from photos, for benchmarks and tests (a stored one is loaded by
``openlfr.services.live``): a ``Gallery`` whose person ids are the people's ids, plus the display names an alert
shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openlfr.errors import OpenLFRError
from openlfr.vision.engine import FaceEngine
from openlfr.vision.image_io import load_rgb
from openlfr.watchlist.search import Gallery
from openlfr.watchlist.second_opinion import SecondGallery


@dataclass(frozen=True)
class LiveWatchlist:
    """What a live pipeline searches, and at which threshold (``note`` says how it was chosen): a deployment's
    snapshot or a stored watchlist (``openlfr.services.live``), or photos in memory (``gallery_from_images``)."""

    name: str
    gallery: Gallery
    names: dict[str, str] = field(default_factory=dict)  # person ref -> display name
    threshold: float = 1.0  # a match score no probe reaches: nobody alerts until a threshold is chosen
    note: str = ""
    cameras: list[dict[str, Any]] = field(default_factory=list)  # a deployment's camera records
    # The second opinion's references (OPENLFR_SECOND_OPINION): the threshold is then the fused score's
    # (openlfr.watchlist.second_opinion); None: the first model alone.
    second: SecondGallery | None = None

    @property
    def model_id(self) -> str:
        return self.gallery.model_id

    @property
    def size(self) -> int:
        """References searched: the N of the false-alert arithmetic."""
        return self.gallery.size

    @property
    def people(self) -> int:
        return self.gallery.person_count


def gallery_from_images(
    engine: FaceEngine, people: Mapping[str, Sequence[Path]], name: str = "in-memory", max_pixels: int = 60_000_000
) -> LiveWatchlist:
    """A watchlist built in memory from photos, one face each (the largest): for benchmarks and tests."""
    vectors, person_ids, reference_ids = [], [], []
    for person, paths in people.items():
        for path in paths:
            faces = engine.faces(load_rgb(Path(path), max_pixels))
            if not faces:
                raise OpenLFRError(f"no face found in {path}")
            face = max(faces, key=lambda f: f.box.area)
            assert face.embedding is not None
            vectors.append(face.embedding)
            person_ids.append(person)
            reference_ids.append(f"{person}/{Path(path).name}")
    gallery = Gallery(np.stack(vectors), person_ids, reference_ids, engine.model_id)
    return LiveWatchlist(name, gallery, {p: p.replace("_", " ").replace("-", " ").title() for p in people})


def people_in_folder(folder: Path) -> dict[str, list[Path]]:
    """``FOLDER/<person>/<image>`` -> {person: [images]} (the layout of ``openlfr watchlist import``)."""
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    return {
        sub.name: sorted(p for p in sub.iterdir() if p.suffix.lower() in suffixes)
        for sub in sorted(folder.iterdir())
        if sub.is_dir()
    }

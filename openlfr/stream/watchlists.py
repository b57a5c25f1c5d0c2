"""A watchlist built in memory from photos, for benchmarks and tests (a stored one is loaded by
``openlfr.services.live``): a ``Gallery`` whose person ids are the people's ids, plus the display names an alert
shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openlfr.errors import OpenLFRError
from openlfr.vision.engine import FaceEngine
from openlfr.vision.image_io import load_rgb
from openlfr.watchlist.search import Gallery


@dataclass
class ScanWatchlist:
    name: str
    gallery: Gallery
    names: dict[str, str] = field(default_factory=dict)  # person ref -> display name

    @property
    def size(self) -> int:
        """References searched: the N of the false-alert arithmetic."""
        return self.gallery.size

    @property
    def people(self) -> int:
        return self.gallery.person_count


def gallery_from_images(
    engine: FaceEngine, people: Mapping[str, Sequence[Path]], name: str = "in-memory", max_pixels: int = 60_000_000
) -> ScanWatchlist:
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
    return ScanWatchlist(name, gallery, {p: p.replace("_", " ").replace("-", " ").title() for p in people})


def people_in_folder(folder: Path) -> dict[str, list[Path]]:
    """``FOLDER/<person>/<image>`` -> {person: [images]} (the layout of ``openlfr watchlist import``)."""
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    return {
        sub.name: sorted(p for p in sub.iterdir() if p.suffix.lower() in suffixes)
        for sub in sorted(folder.iterdir())
        if sub.is_dir()
    }

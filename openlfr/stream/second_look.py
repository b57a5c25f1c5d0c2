"""The second opinion in a camera's pipeline: the second model looks only at the faces the first screened in.

For each sample, the first model's candidates come back from the watchlist; where one reaches the screening
score (``SecondGallery.screen``), the second model embeds the chip the first model already cut (the same
ArcFace 112x112 chip: no second alignment) and the candidates get the fused score
(``openlfr.watchlist.second_opinion``); elsewhere they get the first model's share and the second model is not
run, so its cost falls on the few faces that look like someone listed. A track's fused template has a second
counterpart made of the looks the second model saw (every look from the moment a look or the track's template
screened in), re-scored the same way. The evidence rule then reads fused scores against the fused threshold.

Privacy: the second model's embeddings live as the first's do, in this memory only: a look's is dropped at
once, a track's second template with the track (``Track.forget``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openlfr.stream.tracker import Track
from openlfr.vision.engine import FaceEngine
from openlfr.vision.types import Face
from openlfr.watchlist.search import Candidate
from openlfr.watchlist.second_opinion import SecondGallery


class SecondOpinion:
    """The second model's engine (embedding the first's chips) and the watchlist's second references."""

    def __init__(self, gallery: SecondGallery, engine: FaceEngine) -> None:
        if engine.model_id != gallery.model_id:
            raise ValueError(f"the second references are {gallery.model_id}, the second engine makes {engine.model_id}")
        self.gallery = gallery
        self.engine = engine
        self.embedded = 0  # faces the second model embedded: what the second opinion cost

    def _embed(self, track: Track, face: Face) -> np.ndarray:
        vector = self.engine.embed_chips(face.chip[None])[0]
        self.embedded += 1
        track.second_fused.add(vector, face.quality.score())
        return vector

    def rescore_looks(
        self, looks: Sequence[tuple[Track, Face | None]], answers: Sequence[Sequence[Candidate]]
    ) -> list[list[Candidate]]:
        """Each look's candidates with fused scores; the second model embeds a look whose first candidates reach
        the screen, or any look of a track it has already seen (its template's looks stay in step)."""
        rescored = []
        for (track, face), candidates in zip(looks, answers, strict=True):
            wanted = self.gallery.screened_in(candidates) or track.second_fused.looks > 0
            vector = self._embed(track, face) if wanted and face is not None else None
            rescored.append(self.gallery.rescore(candidates, vector))
        return rescored

    def rescore_fused(
        self, tracks: Sequence[tuple[Track, Face | None]], answers: Sequence[Sequence[Candidate]]
    ) -> list[list[Candidate]]:
        """The candidates of tracks' fused templates with fused scores; a template screened in whose track the
        second model has not seen yet gets its current look embedded first."""
        rescored = []
        for (track, face), candidates in zip(tracks, answers, strict=True):
            if not self.gallery.screened_in(candidates):
                rescored.append(self.gallery.rescore(candidates, None))
                continue
            if track.second_fused.looks == 0 and face is not None:
                self._embed(track, face)
            rescored.append(self.gallery.rescore(candidates, track.second_fused.vector))
        return rescored

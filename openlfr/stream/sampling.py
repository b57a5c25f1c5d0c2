"""When a tracked face is looked at, sampled and embedded: the per-track budget and the quality gate (pure)."""

from __future__ import annotations

from openlfr.settings import StreamSettings
from openlfr.stream.tracker import Track
from openlfr.vision.types import Face


class SamplingPolicy:
    """``k``: the samples an alert needs (the evidence rule's k), taken as soon as ``embed_gap_s`` allows."""

    def __init__(self, config: StreamSettings, k: int) -> None:
        self.config, self.k = config, k

    def passes_gate(self, face: Face) -> bool:
        """This look alone against the quality gate's limits."""
        q, c = face.quality, self.config
        return (
            q.inter_eye_px >= c.min_inter_eye_px
            and abs(q.yaw_deg) <= c.max_yaw_deg
            and abs(q.pitch_deg) <= c.max_pitch_deg
            and q.sharpness >= c.min_sharpness
        )

    def steadily_passes(self, track: Track, face: Face) -> bool:
        """Does this look pass the gate, and did one of the track's ``gate_confirm_looks`` looks before it?

        Landmarks on a small or turning face jitter from frame to frame: a 33 px face measured at 11 px between
        the eyes on fifty looks reads 15 px on one, and that one look passed the gate alone. Whether such a face
        was embedded then hung on which frames a camera happened to look at (a busy box looks at fewer), not on
        the face. A look is recorded here whatever the answer (a yes or no, nothing of the face).
        """
        passed = self.passes_gate(face)
        window = self.config.gate_confirm_looks
        confirmed = window == 0 or any(track.gate_looks)
        track.gate_looks.append(passed)
        while len(track.gate_looks) > window:
            track.gate_looks.popleft()
        return passed and confirmed

    def due(self, track: Track, clock: float) -> bool:
        """Could this track take a sample now (before looking at the face)?"""
        if track.decided or track.embeddings >= self.config.embed_budget:
            return False
        return clock - track.last_embed_clock >= self.config.embed_gap_s

    def sample_gap(self, track: Track) -> float:
        """The first k samples as soon as ``embed_gap_s`` allows, then at doubling gaps."""
        c = self.config
        if track.embeddings < self.k:
            return c.embed_gap_s
        return min(c.max_sample_gap_s, c.embed_gap_s * 2.0 ** (track.embeddings - self.k + 1))

    def worth_a_look(self, track: Track, clock: float) -> bool:
        """Analyse the face now? When a sample is due anyway, or, at a limited rate, to catch a better view."""
        if clock - track.last_embed_clock >= self.sample_gap(track):
            return True
        return clock - track.last_analysed_clock >= self.config.look_interval_s

    def wants(self, track: Track, quality: float, clock: float) -> bool:
        since = clock - track.last_embed_clock
        return since >= self.sample_gap(track) or quality >= track.best_embedded_quality + self.config.better_by

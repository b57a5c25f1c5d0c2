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
        q, c = face.quality, self.config
        return (
            q.inter_eye_px >= c.min_inter_eye_px
            and abs(q.yaw_deg) <= c.max_yaw_deg
            and abs(q.pitch_deg) <= c.max_pitch_deg
            and q.sharpness >= c.min_sharpness
        )

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

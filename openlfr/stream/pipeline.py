"""One camera's analysis: detect -> track -> quality and best shot -> budgeted embedding -> match -> evidence -> alert.

What runs on which frame (a 1080p camera at 25 fps on two cores; RetinaFace, MobileFaceNet):

* **Whole-picture detection** every ``detect_interval_s`` (0.2 s), on a half-size copy (~55 ms), in a process
  of its own for live sources (``stream/detector.py``); a face walking into view is found within 0.2 s.
* **Track-local detection** on every frame: a window around each track's predicted box, scaled so the face is
  ~46 px tall (~0.7 ms a face), so the best shot is chosen from many frames, not five a second; a window that
  comes back empty for a track seen on the previous frame is searched once more at ``retry_face_px`` (56 px)
  (``stream/local_search.py``).
* **Landmarks, chip and quality** only for tracks that could take a sample now (not decided, budget left,
  ``embed_gap_s`` since the last one), from a small RGB region converted on demand (never the whole frame).
* **Embedding** (one batched ONNX call a frame, ~20 ms a face with flip averaging) for observations that pass
  the quality gate (on this look and on one of the track's two looks before it) and the per-track budget, at
  most ``embed_per_frame`` new ones a frame: the first samples
  quickly (an alert needs ``k``), then at doubling gaps or when the face is clearly better than any embedded.
* **Matching** of each embedding against the watchlist, and (track fusion, on by default) of the track's looks
  fused into one quality-weighted template; then the evidence rule of the track (k of n looks, or the fused
  template from the k-th look on: ``stream/evidence.py``); one alert per person per track, and a cooldown per
  person per camera across tracks.

Privacy: crops, chips and embeddings exist only in this object's memory. A sample's crop is kept only while
its score could make it an alert's probe (with track fusion, any look of a track not yet decided could); all
of a track's biometric state, its fused template too, is dropped when the track ends (``Track.forget``).
Nothing here writes to disk or logs anything about a face.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import numpy as np

from openlfr.alerts.record import AlertFound
from openlfr.settings import StreamSettings
from openlfr.stream.alert_of import AlertContext, Moment, alert_of, probe_crop
from openlfr.stream.evidence import EvidenceRule, decide
from openlfr.stream.frames import YuvFrame, expand_box, shift_box
from openlfr.stream.interfaces import AsyncDetector, FrameResult, Matcher, TrackBox
from openlfr.stream.local_search import LocalSearch
from openlfr.stream.sampling import SamplingPolicy
from openlfr.stream.second_look import SecondOpinion
from openlfr.stream.source import CameraConfig
from openlfr.stream.stats import CameraCounters, LatencyHistogram
from openlfr.stream.tracker import Observation, Sample, Track, Tracker, affinity
from openlfr.vision.engine import FaceEngine
from openlfr.vision.types import Box, Detection, Face, FaceDetector
from openlfr.watchlist.score import match_score
from openlfr.watchlist.search import Candidate


class CameraPipeline:
    def __init__(
        self,
        camera: CameraConfig,
        config: StreamSettings,  # the stream section of the settings (``OPENLFR_STREAM_*``)
        engine: FaceEngine,
        detector: FaceDetector,
        matcher: Matcher | None,
        rule: EvidenceRule | None,
        may_match: Callable[[], bool] = lambda: True,
        second: SecondOpinion | None = None,
    ) -> None:
        if matcher is not None and matcher.model_id != engine.model_id:
            raise ValueError(
                f"the watchlist holds {matcher.model_id} embeddings but the camera makes {engine.model_id}"
            )
        self.camera = camera
        self.config = config
        self.engine = engine
        self.detector = detector
        self.matcher = matcher
        self.rule = rule
        self.may_match = may_match
        self.second = second  # re-scores what the first model screens in (stream/second_look.py)
        self.tracker = Tracker(max_age_s=config.max_age_s, reid_min_similarity=config.reid_min_score)
        self.counters = CameraCounters()
        self.latency = LatencyHistogram()
        self.search = LocalSearch(camera, config, detector, self.tracker)
        self._previous_clock = float("-inf")  # of the frame analysed before this one
        self._detect_scale = config.detect_scale or detector.live_scale
        self._last_detect = float("-inf")
        self._last_sampled = float("-inf")  # clock of the last frame whose faces were sampled
        self.sampling = SamplingPolicy(config, rule.k if rule is not None else 1)
        self._detect_cost_s = 0.0  # wall time the last whole-picture detection took
        self.live = False  # set for live and paced sources: see StreamSettings.detect_share
        self.remote: AsyncDetector | None = None  # whole-picture detection in another process (live sources)
        self._last_alert: dict[Hashable, float] = {}
        self._matching_now = False
        # Track fusion: this frame's candidates of the fused templates, by track id (memory only, per frame)
        self._fused_now: dict[int, list[Candidate]] = {}

    def resume(self, next_track_id: int, last_alerts: dict[str, float]) -> None:
        """Continue a camera's earlier runs: track ids from ``next_track_id``, and each person's cooldown from
        their last alert (on this pipeline's clock; earlier alerts have negative or past clock values)."""
        self.tracker.continue_from(next_track_id)
        self._last_alert.update(last_alerts)

    # ----- the frame loop -----

    def process(self, frame: YuvFrame, clock: float, arrival: float, media_time: float = 0.0) -> FrameResult:
        result = FrameResult()
        self.counters.processed += 1
        self._matching_now = self.matcher is not None and self.rule is not None and bool(self.may_match())
        seen: list[tuple[Track, Observation]] = []
        if self.remote is not None:
            seen = self._follow(frame, clock, self._behind(arrival) and not self._may_sample(clock, arrival))
            arrived = self.remote.poll()
            if arrived is not None:
                seen += self._adopt(frame, clock, arrived[0], arrived[1], {t.id for t, _ in seen})
            if clock - self._last_detect >= self.config.detect_interval_s and not self.remote.busy():
                area = self.search.area(frame)
                self.remote.submit(frame, area, clock, self._detect_scale)
                result.full_detection = True
                self._last_detect = clock
                self.counters.detect_frames += 1
        elif clock - self._last_detect >= self._detect_gap():
            result.full_detection = True
            self._last_detect = clock
            self.counters.detect_frames += 1
            started = time.monotonic()
            seen = self._detect_and_associate(frame, clock)
            self._detect_cost_s = time.monotonic() - started
        elif self.config.track_between and self.tracker.active:
            seen = self._follow(frame, clock)
        self.counters.faces_seen += len(seen)
        self.counters.tracks = self.tracker.created

        if self._matching_now and seen and not self._hurried(clock, arrival):
            self._last_sampled = clock
            result.alerts = self._sample_and_match(frame, seen, clock, arrival, media_time)
        for track, observation in seen:
            result.boxes.append(TrackBox(observation.box, track.id))

        for track in self.tracker.expire(clock):
            track.forget()
        self._previous_clock = clock
        self.latency.add((time.monotonic() - arrival) * 1000.0)
        return result

    def _hurried(self, clock: float, arrival: float) -> bool:
        """A live camera running behind (a frame waiting over half of ``max_lag_s``) leaves sampling to a later
        frame, so it catches up instead of dropping frames; still at least once every ``embed_gap_s``, so an
        overloaded camera keeps matching."""
        if not self.live or time.monotonic() - arrival <= self.config.max_lag_s / 2:
            return False
        return clock - self._last_sampled < self.config.embed_gap_s

    def _behind(self, arrival: float) -> bool:
        return self.live and time.monotonic() - arrival > self.config.max_lag_s / 2

    def _may_sample(self, clock: float, arrival: float) -> bool:
        return self._matching_now and not self._hurried(clock, arrival)

    def _detect_gap(self) -> float:
        """Seconds of the camera's clock between whole-picture detections."""
        gap = self.config.detect_interval_s
        if self.live and self.tracker.active and 0.0 < self.config.detect_share < 1.0:
            # Detection costing D seconds is followed by at least D * (1 - share) / share of tracking time.
            gap = max(gap, self._detect_cost_s / self.config.detect_share)
        return gap

    def finish(self) -> None:
        """The camera stopped: end every track and forget what they held."""
        for track in self.tracker.end_all():
            track.forget()

    # ----- detection and tracking -----

    def _detect_and_associate(self, frame: YuvFrame, clock: float) -> list[tuple[Track, Observation]]:
        detections = self.search.detect(frame, self.search.area(frame), self._detect_scale)
        observations = [Observation.of(d, clock) for d in detections]
        embed = (lambda o: self._embed_one(frame, o)) if self._matching_now else None
        association = self.tracker.associate(observations, clock, embed, self._similarity)
        seen = []
        for track, observation in association.matched:
            track.observe(observation)
            seen.append((track, observation))
        for observation in association.new:
            seen.append((self.tracker.start(observation), observation))
        return seen

    def _adopt(
        self, frame: YuvFrame, clock: float, then: float, detections: list[Detection], followed: set[int]
    ) -> list[tuple[Track, Observation]]:
        """Take in whole-picture detections made on an earlier frame (at ``then``) by another process.

        A face a track was on at ``then``, or is on now, is already followed; if that track has not seen its face
        since ``then`` (local detection missed it), the face is looked for again in the current frame and given
        back to the track. Any other face is looked for in the current frame around where it was, then associated
        like a detection (a track that lost it a moment ago may take it back, if the face says so) or starts a
        track.
        """
        fresh: list[Observation] = []
        refound: list[tuple[Track, Observation]] = []
        active = list(self.tracker.active.values())
        for detection in detections:
            if detection.box.height < self.search.min_face_px:
                continue
            owner = next(
                (
                    t
                    for t in active
                    if affinity(t.box_at(then), detection.box) >= self.tracker.min_affinity
                    or affinity(t.box, detection.box) >= self.tracker.min_affinity
                ),
                None,
            )
            if owner is not None and (owner.id in followed or owner.last_clock >= then):
                continue
            taken = [o.box for o in fresh] + [o.box for _, o in refound]
            found = self.search.find_again(frame, clock, detection.box, taken)
            if found is None:
                continue
            if owner is not None:
                refound.append((owner, found))
            else:
                fresh.append(found)
        seen = []
        for track, observation in refound:
            track.observe(observation)
            seen.append((track, observation))
        if not fresh:
            return seen
        embed = (lambda o: self._embed_one(frame, o)) if self._matching_now else None
        association = self.tracker.associate(fresh, clock, embed, self._similarity)
        taken_ids = followed | {t.id for t, _ in refound}
        for track, observation in association.matched:
            if track.id in taken_ids:
                continue  # already on a face this frame: the detection was a second look at it
            track.observe(observation)
            seen.append((track, observation))
        for observation in association.new:
            seen.append((self.tracker.start(observation), observation))
        return seen

    def _follow(self, frame: YuvFrame, clock: float, thin: bool = False) -> list[tuple[Track, Observation]]:
        """Each track's face in this frame (``LocalSearch.follow``), remembering the frame for the next one's retry."""
        return self.search.follow(frame, clock, self._previous_clock, thin)

    # ----- biometric work (memory only) -----
    def _similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(match_score(float(a @ b), self.engine.model_id))

    def _analyse(self, frame: YuvFrame, observation: Observation) -> tuple[Face, np.ndarray, Box] | None:
        """Landmarks, chip and quality of one face, from an RGB region around it (and that region)."""
        region = expand_box(observation.box, 1.0, frame.width, frame.height)
        rgb, region = frame.rgb(region)
        local, points = shift_box(observation.box, -region.left, -region.top), observation.landmarks
        try:
            if points is not None:
                points = points - np.array([region.left, region.top], dtype=np.float64)
            (face,) = self.engine.analyse(rgb, [Detection(local, observation.score, self.detector.name, points)])
        except (ValueError, RuntimeError):
            return None
        observation.face = face
        return face, rgb, region

    def _embed_one(self, frame: YuvFrame, observation: Observation) -> np.ndarray | None:
        """Embed a single face for association (a near tie, a face reappearing); reused as a sample later."""
        if observation.embedding is not None:
            return observation.embedding
        analysed = self._analyse(frame, observation)
        if analysed is None:
            return None
        self.engine.embed([analysed[0]])
        self.counters.embeddings += 1
        observation.embedding = analysed[0].embedding
        return observation.embedding

    def _sample_and_match(
        self,
        frame: YuvFrame,
        seen: list[tuple[Track, Observation]],
        clock: float,
        arrival: float,
        media_time: float,
    ) -> list[AlertFound]:
        assert self.matcher is not None and self.rule is not None
        chosen: list[tuple[Track, Observation, np.ndarray, Box]] = []
        # Tracks with the fewest samples first: when the per-frame cap leaves some for the next frame, those
        # nearest their first alert decision go first.
        new_embeddings = self.config.embed_per_frame or len(seen)
        for track, observation in sorted(seen, key=lambda pair: pair[0].embeddings):
            if not self.sampling.due(track, clock) or (
                observation.face is None and not self.sampling.worth_a_look(track, clock)
            ):
                continue
            if observation.embedding is None and new_embeddings <= 0:
                continue  # this frame's share of embedding work is spent; the track is still due next frame
            track.last_analysed_clock = clock
            analysed = self._analyse(frame, observation) if observation.face is None else None
            face = observation.face
            if face is None:
                continue
            if analysed is None:  # analysed earlier for association: fetch its region again for the crop
                analysed = (face, *frame.rgb(expand_box(observation.box, 1.0, frame.width, frame.height)))
            _, rgb, region = analysed
            if not self.sampling.steadily_passes(track, face):
                continue
            if not self.sampling.wants(track, face.quality.score(), clock):
                continue
            chosen.append((track, observation, rgb, region))
            if observation.embedding is None:
                new_embeddings -= 1
        if not chosen:
            return []
        pending = [o.face for _, o, _, _ in chosen if o.embedding is None and o.face is not None]
        if pending:
            self.engine.embed(pending)
            self.counters.embeddings += len(pending)
            for _, observation, _, _ in chosen:
                if observation.embedding is None and observation.face is not None:
                    observation.embedding = observation.face.embedding
        probes = np.stack([o.embedding for _, o, _, _ in chosen if o.embedding is not None])
        answers = self.matcher.search(probes, self.config.top_k)
        if self.second is not None:
            answers = self.second.rescore_looks([(t, o.face) for t, o, _, _ in chosen], answers)
        self._fused_now = self._fuse(chosen)
        alerts = []
        for (track, observation, rgb, region), candidates in zip(chosen, answers, strict=True):
            assert observation.face is not None and observation.embedding is not None
            quality = observation.face.quality.score()
            track.embeddings += 1
            track.last_embed_clock = clock
            track.best_embedded_quality = max(track.best_embedded_quality, quality)
            track.add_template(observation.embedding)
            candidates = list(candidates)
            # With track fusion any look may become the probe of a fused verdict: its crop is kept (in memory,
            # dropped once the track is decided or ends) like a look that reached the threshold alone.
            could_alert = bool(candidates) and (candidates[0].score >= self.rule.threshold or self.rule.fuse)
            crop = probe_crop(rgb, region, observation.box, self.config.probe_margin) if could_alert else None
            kept = observation.embedding if crop is not None else None  # only a possible probe's embedding
            track.samples.append(Sample(clock, arrival, quality, candidates, crop, observation.box, kept))
            while len(track.samples) > self.rule.n:
                track.samples.popleft()
            # The face's own arrays are not needed any more: the sample holds what the evidence needs.
            observation.face = None
            observation.embedding = None
            alert = self._judge(track, clock, arrival, media_time)
            if alert is not None:
                alerts.append(alert)
            if track.embeddings >= self.config.embed_budget:
                track.decided = True
            if track.decided:  # no alert can come from this track any more: its crops have no use left
                for sample in track.samples:
                    sample.crop = None
                    sample.embedding = None
        self._fused_now = {}  # this frame's fused candidates: not kept past the frame
        return alerts

    def _fuse(self, chosen: list[tuple[Track, Observation, np.ndarray, Box]]) -> dict[int, list[Candidate]]:
        """Each chosen look joins its track's fused template (quality-weighted); the templates of tracks with
        ``k`` looks or more are searched, in one batch. Their candidates, by track id."""
        assert self.matcher is not None and self.rule is not None
        if not self.rule.fuse:
            return {}
        ready = []
        for index, (track, observation, _, _) in enumerate(chosen):
            assert observation.face is not None and observation.embedding is not None
            track.fused.add(observation.embedding, observation.face.quality.score())
            if track.fused.looks >= self.rule.k and track.fused.vector is not None:
                ready.append(index)
        if not ready:
            return {}
        templates = np.stack([chosen[i][0].fused.vector for i in ready])  # type: ignore[misc]
        answers = self.matcher.search(templates, self.config.top_k)
        if self.second is not None:
            answers = self.second.rescore_fused([(chosen[i][0], chosen[i][1].face) for i in ready], answers)
        return {chosen[i][0].id: list(candidates) for i, candidates in zip(ready, answers, strict=True)}

    def _judge(self, track: Track, clock: float, arrival: float, media_time: float) -> AlertFound | None:
        assert self.rule is not None
        samples = list(track.samples)
        fused = self._fused_now.get(track.id, [])
        verdict = decide(samples, self.rule, exclude=track.alerted, fused=fused, looks=track.fused.looks)
        if verdict is None:
            return None
        track.alerted.add(verdict.person_id)
        track.decided = True
        last = self._last_alert.get(verdict.person_id)
        if last is not None and clock - last < self.config.cooldown_s:
            self.counters.suppressed += 1
            return None
        self._last_alert[verdict.person_id] = clock
        if samples[verdict.best].crop is None:  # cannot happen: every supporting sample scored above the threshold
            return None
        self.counters.alerts += 1
        return alert_of(
            AlertContext(self.camera.name, self.engine.model_id, self.rule, self.second),
            track,
            samples,
            verdict,
            Moment(clock, arrival, media_time),
        )

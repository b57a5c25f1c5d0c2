"""Pure parts of the live pipeline: YUV frames, the tracker, the k-of-n evidence rule, latency statistics."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

import av
import numpy as np
import pytest

from openlfr.stream.evidence import EvidenceRule, decide
from openlfr.stream.frames import FrameFormat, YuvFrame, even_box, rgb_to_i420
from openlfr.stream.stats import LatencyHistogram
from openlfr.stream.tracker import Observation, Sample, Tracker
from openlfr.stream.worker import LiveBacklog, Ticket
from openlfr.vision.types import Box


def smooth_image(rows: int = 64, cols: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return np.stack([x / cols * 255, y / rows * 255, (x + y) / (rows + cols) * 255], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full_range", [False, True])
def test_yuv_round_trip_is_close(matrix: str, full_range: bool) -> None:
    image = smooth_image()
    frame = YuvFrame(rgb_to_i420(image, matrix, full_range), FrameFormat(96, 64, matrix, full_range))
    back, area = frame.rgb()
    assert area == Box(0, 0, 96, 64)
    assert np.abs(back.astype(int) - image).max() <= 4


def test_region_conversion_equals_the_whole_frame_cut() -> None:
    image = smooth_image()
    frame = YuvFrame(rgb_to_i420(image), FrameFormat(96, 64))
    whole, _ = frame.rgb()
    part, area = frame.rgb(Box(11, 7, 41, 33))
    assert area == even_box(Box(11, 7, 41, 33), 96, 64) == Box(10, 6, 42, 34)
    assert np.array_equal(part, whole[6:34, 10:42])
    assert frame.gray(Box(10, 6, 42, 34)).shape == (28, 32)


def test_conversion_matches_ffmpeg_on_a_decoded_frame() -> None:
    """Our region conversion against FFmpeg's own, on a frame FFmpeg decoded (BT.601, limited range)."""
    image = smooth_image(128, 160)
    source = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    ours = YuvFrame(source.to_ndarray(format="yuv420p"), FrameFormat(160, 128, "bt601", False)).rgb()[0]
    theirs = source.to_ndarray(format="rgb24")
    assert np.abs(ours.astype(int) - theirs).mean() < 2.0


def test_preview_is_small_and_scaled() -> None:
    frame = YuvFrame(rgb_to_i420(smooth_image(64, 96)), FrameFormat(96, 64))
    picture, scale = frame.preview(40)
    assert scale == 0.25 and picture.shape == (16, 24, 3)


def obs(left: int, top: int, size: int, clock: float, embedding: np.ndarray | None = None) -> Observation:
    return Observation(Box(left, top, left + size, top + size), 1.0, clock, embedding=embedding)


def unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_tracker_follows_a_moving_face_and_predicts_its_motion() -> None:
    tracker = Tracker()
    first = tracker.associate([obs(100, 100, 80, 0.0)], 0.0)
    track = tracker.start(first.new[0])
    for step in range(1, 6):
        # Half a face per look: the predicted box (constant velocity) keeps the overlap.
        found = tracker.associate([obs(100 + 40 * step, 100, 80, 0.2 * step)], 0.2 * step)
        assert [t.id for t, _ in found.matched] == [track.id] and not found.new
        found.matched[0][0].observe(found.matched[0][1])
    assert 180 < track.velocity[0] <= 200  # px/s, learnt from the steps
    assert tracker.created == 1


def test_tracker_starts_new_tracks_for_faces_elsewhere_and_expires_old_ones() -> None:
    tracker = Tracker(max_age_s=1.0)
    tracker.start(obs(0, 0, 80, 0.0))
    found = tracker.associate([obs(500, 300, 80, 0.2)], 0.2)
    assert not found.matched and len(found.new) == 1
    tracker.start(found.new[0])
    ended = tracker.expire(1.1)
    assert [t.box.left for t in ended] == [0] and len(tracker.active) == 1


def test_a_near_tie_is_settled_by_the_faces() -> None:
    tracker = Tracker()
    alice, bob = unit(1, 0, 0), unit(0, 1, 0)
    left = tracker.start(obs(100, 100, 80, 0.0))
    right = tracker.start(obs(130, 100, 80, 0.0))
    left.add_template(alice)
    right.add_template(bob)
    # One detection halfway between the two boxes, that looks like Bob.
    found = tracker.associate([obs(116, 100, 80, 0.1, embedding=unit(0.1, 1, 0))], 0.1, lambda o: o.embedding, cosine)
    assert [(t.id, o.box.left) for t, o in found.matched] == [(right.id, 116)]


def test_a_face_reappearing_elsewhere_rejoins_its_track_only_if_it_looks_the_same() -> None:
    tracker = Tracker(reid_min_similarity=0.9)
    walker = tracker.start(obs(100, 100, 80, 0.0))
    walker.add_template(unit(1, 0, 0))
    same = tracker.associate([obs(600, 120, 80, 0.8, embedding=unit(1, 0.1, 0))], 0.8, lambda o: o.embedding, cosine)
    assert [t.id for t, _ in same.matched] == [walker.id]
    other = tracker.associate([obs(600, 120, 80, 0.8, embedding=unit(0, 1, 0))], 0.8, lambda o: o.embedding, cosine)
    assert not other.matched and len(other.new) == 1


def test_forget_drops_every_crop_and_embedding() -> None:
    tracker = Tracker()
    track = tracker.start(obs(0, 0, 80, 0.0))
    track.add_template(unit(1, 2, 3))
    track.samples.append(Sample(0.0, 0.0, 0.5, [object()], np.zeros((8, 8, 3), np.uint8)))
    track.forget()
    assert track.template is None and not track.samples


@dataclass(frozen=True)
class C:
    person_id: str
    reference_id: str
    score: float


@dataclass
class S:
    candidates: list[C]


def look(person: str, score: float) -> S:
    return S([C(person, person + "/1", score), C("someone-else", "x/1", score / 2)])


def test_evidence_needs_k_of_the_last_n_samples() -> None:
    rule = EvidenceRule(threshold=0.7, k=2, n=3)
    assert decide([look("p1", 0.9)], rule) is None
    verdict = decide([look("p1", 0.9), look("p2", 0.95), look("p1", 0.75)], rule)
    assert verdict is not None and verdict.person_id == "p1" and verdict.supporting == (0, 2)
    assert verdict.best == 0 and verdict.score == 0.9
    # The first sample has left the window of the last three.
    assert decide([look("p1", 0.9), look("p2", 0.95), look("p3", 0.8), look("p1", 0.75)], rule) is None


def test_evidence_ignores_samples_below_the_threshold_and_people_already_alerted() -> None:
    rule = EvidenceRule(threshold=0.7, k=2, n=5)
    assert decide([look("p1", 0.69), look("p1", 0.69), look("p1", 0.71)], rule) is None
    assert decide([look("p1", 0.8), look("p1", 0.8)], rule, exclude={"p1"}) is None
    assert decide([S([]), look("p1", 0.8), look("p1", 0.8)], rule) is not None


def test_evidence_rule_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        EvidenceRule(0.5, k=3, n=2)
    with pytest.raises(ValueError):
        EvidenceRule(1.5)


def test_latency_percentiles_merge_across_histograms() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for value in range(1, 51):
        a.add(value)
    for value in range(51, 101):
        b.add(value)
    merged = LatencyHistogram.from_sparse(a.sparse(), a.total_ms, a.max_ms)
    merged.merge(b)
    assert merged.count == 100
    assert merged.percentile(50) == 51.0 and merged.percentile(95) == 96.0
    assert LatencyHistogram().percentile(50) is None


def _tickets(arrivals: list[float]) -> list[Ticket]:
    fmt = FrameFormat(16, 16, "bt601", False)
    return [Ticket("ring", 8, 384, i, fmt, i, a, a, a) for i, a in enumerate(arrivals)]


def test_a_live_backlog_is_worked_off_in_order_while_it_is_young() -> None:
    waiting: queue.Queue[Ticket | None] = queue.Queue()
    now = time.monotonic()
    for ticket in _tickets([now - 0.12, now - 0.08, now - 0.04]):
        waiting.put(ticket)
    waiting.put(None)
    given_back: list[int] = []
    backlog = LiveBacklog(waiting, 0.3, lambda t: given_back.append(t.index))
    order = []
    while (ticket := backlog.next(0.1)) is not None:
        order.append(ticket.index)
    assert order == [0, 1, 2] and given_back == []


def test_a_live_backlog_gives_back_frames_older_than_the_lag_but_never_the_newest() -> None:
    waiting: queue.Queue[Ticket | None] = queue.Queue()
    now = time.monotonic()
    for ticket in _tickets([now - 2.0, now - 1.0, now - 0.5, now - 0.1]):
        waiting.put(ticket)
    given_back: list[int] = []
    backlog = LiveBacklog(waiting, 0.3, lambda t: given_back.append(t.index))
    first = backlog.next(0.1)
    assert first is not None and first.index == 3 and given_back == [0, 1, 2]
    waiting.put(_tickets([now - 5.0])[0])  # even a stale frame is analysed when nothing newer waits
    alone = backlog.next(0.1)
    assert alone is not None and alone.index == 0 and given_back == [0, 1, 2]
    with pytest.raises(queue.Empty):
        backlog.next(0.05)

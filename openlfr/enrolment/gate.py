"""The enrolment quality gate: which face of a photo to take, and whether it is good enough to search with.

Pure functions of a face's quality record and the settings; every refusal is a sentence naming the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from openlfr.settings import Settings
from openlfr.vision.types import Box, Quality

# Which face to take from a photo: None = the photo must show exactly one; N = the N-th from the left
# (1-based); "largest" = the biggest.
FaceChoice = int | Literal["largest"] | None


@dataclass(frozen=True)
class QualityGate:
    min_inter_eye_px: float
    min_sharpness: float
    max_yaw_deg: float
    max_pitch_deg: float

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityGate:
        return cls(
            min_inter_eye_px=settings.enrol_min_inter_eye_px,
            min_sharpness=settings.enrol_min_sharpness,
            max_yaw_deg=settings.enrol_max_yaw_deg,
            max_pitch_deg=settings.enrol_max_pitch_deg,
        )

    def refusals(self, quality: Quality) -> list[str]:
        """Every way the face falls short; empty when it passes."""
        reasons = []
        if quality.inter_eye_px < self.min_inter_eye_px:
            reasons.append(
                f"face too small: {quality.inter_eye_px:.0f} px between the eyes (minimum {self.min_inter_eye_px:g})"
            )
        if quality.sharpness < self.min_sharpness:
            reasons.append(f"face too blurred: sharpness {quality.sharpness:.1f} (minimum {self.min_sharpness:g})")
        if abs(quality.yaw_deg) > self.max_yaw_deg:
            reasons.append(f"face turned sideways: yaw {quality.yaw_deg:+.0f}° (limit ±{self.max_yaw_deg:g}°)")
        if abs(quality.pitch_deg) > self.max_pitch_deg:
            reasons.append(f"face tilted up or down: pitch {quality.pitch_deg:+.0f}° (limit ±{self.max_pitch_deg:g}°)")
        return reasons


def left_to_right(boxes: Sequence[Box]) -> list[int]:
    """Indices of the boxes ordered by their left edge: the numbering ``--face N`` uses."""
    return sorted(range(len(boxes)), key=lambda i: (boxes[i].left, boxes[i].top))


@dataclass(frozen=True)
class FacePick:
    """The face a choice takes from a photo's boxes: its ``index`` into them and its ``number`` from the left, or
    (both None) the ``problem`` that none can be taken: no face, several and none chosen, or no such face."""

    index: int | None
    number: int | None
    problem: Literal["no face", "several faces", "no such face"] | None = None


def pick_face(boxes: Sequence[Box], choice: FaceChoice) -> FacePick:
    """The face ``choice`` takes: enrolment and photo search choose alike and word their refusals their own way."""
    if not boxes:
        return FacePick(None, None, "no face")
    order = left_to_right(boxes)
    if choice is None:
        return FacePick(0, 1) if len(boxes) == 1 else FacePick(None, None, "several faces")
    if choice == "largest":
        index = max(range(len(boxes)), key=lambda i: boxes[i].area)
        return FacePick(index, order.index(index) + 1)
    if not 1 <= choice <= len(boxes):
        return FacePick(None, None, "no such face")
    return FacePick(order[choice - 1], choice)


def enrolment_refusal(pick: FacePick, faces: int, choice: FaceChoice) -> str:
    """Why enrolment takes no face of a photo of ``faces`` faces, as its report says it."""
    if pick.problem == "no face":
        return "no face found"
    if pick.problem == "several faces":
        return (
            f"{faces} faces found; enrol from a photo of one person, or choose one with "
            f"--face 1..{faces} (numbered from the left) or --face largest"
        )
    return f"--face {choice} asked for, but {faces} face(s) found"


def choose_face(boxes: Sequence[Box], choice: FaceChoice) -> int | str:
    """The index of the face to enrol, or the reason none can be chosen."""
    pick = pick_face(boxes, choice)
    return enrolment_refusal(pick, len(boxes), choice) if pick.index is None else pick.index


def parse_face_choice(text: str | None) -> FaceChoice:
    """``--face`` as typed: a number from 1 or ``largest``. Raises ValueError with the reason."""
    if text is None or text == "":
        return None
    if text.strip().lower() == "largest":
        return "largest"
    try:
        number = int(text)
    except ValueError:
        raise ValueError(
            f"--face takes a number from 1 (faces counted from the left) or 'largest', not {text!r}"
        ) from None
    if number < 1:
        raise ValueError("--face counts from 1 (the leftmost face)")
    return number

"""Face quality from five landmarks and the face's pixels: pure functions, no model.

Both landmark layouts (``types.DLIB_FIVE``, ``types.EYES_NOSE_MOUTH``) give the eye centres, hence the size (the
distance between them) and the roll. Yaw and pitch come from the nose: dlib's base of the nose against the eye
line; or RetinaFace's nose tip against the eye line and the face's midline (eyes' midpoint to mouth's).
Sharpness is measured on one canonical chip (the face turned and scaled so that its eye centres sit where
ArcFace's 112x112 template puts them) whatever chip the embedder eats, so a threshold means the same with every
detector and embedder.
"""

from __future__ import annotations

import math

import numpy as np

from openlfr.vision.align import ARCFACE_TEMPLATE_112, warp_to_template
from openlfr.vision.types import DLIB_FIVE, EYES_NOSE_MOUTH, Box, Quality

# dlib's 5 points: distance from the eye line down to the base of the nose, in eye distances, in a frontal face.
FRONTAL_NOSE_DROP = 0.72
# RetinaFace's 5 points: the nose tip's drop below the eye line, in eye distances (undone of yaw), in a frontal
# face: the median over all 13,233 LFW faces, so that LFW's median pitch is 0 (ArcFace's template has 0.57).
FRONTAL_NOSE_TIP_DROP = 0.547
# A generic head (the 3D model common in head-pose estimation: the nose tip 130 units in front of the eye
# centres, which are 157 to each side of it and 170 above it) turns the 2D ratios into angles:
YAW_SLOPE = 0.83  # nose tip offset from the midline / half the eye distance = YAW_SLOPE * tan(yaw)
PITCH_SLOPE = 0.41  # nose tip drop / eye distance (undone of yaw) - frontal drop = PITCH_SLOPE * tan(pitch)
QUALITY_CHIP_SIZE = 112


def eye_centres(landmarks: np.ndarray, order: str = DLIB_FIVE) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres."""
    if order == EYES_NOSE_MOUTH:
        eye_a, eye_b = landmarks[0], landmarks[1]
    elif order == DLIB_FIVE:  # two corners per eye, then the nose
        eye_a, eye_b = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)
    else:
        raise ValueError(f"unknown landmark order {order!r}")
    return (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)


def sharpness(chip: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the grey chip's central area."""
    grey = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    rows, cols = grey.shape
    inner = grey[rows // 6 : rows - rows // 6, cols // 6 : cols - cols // 6]
    laplacian = inner[:-2, 1:-1] + inner[2:, 1:-1] + inner[1:-1, :-2] + inner[1:-1, 2:] - 4.0 * inner[1:-1, 1:-1]
    return float(laplacian.var())


def quality_chip(image: np.ndarray, landmarks: np.ndarray, order: str) -> np.ndarray:
    """The canonical chip sharpness is measured on: eye centres onto ArcFace's 112x112 template eyes."""
    left, right = eye_centres(landmarks, order)
    return warp_to_template(image, np.stack([left, right]), ARCFACE_TEMPLATE_112[:2], QUALITY_CHIP_SIZE)


def pose_from_landmarks(landmarks: np.ndarray, order: str = DLIB_FIVE) -> tuple[float, float, float]:
    """Coarse (yaw, pitch, roll) in degrees; 0 is frontal, pitch > 0 is looking down.

    dlib's points: yaw from the nose base's sideways offset from the eyes' midpoint relative to half the eye
    distance; pitch from its drop below the eye line relative to the eye distance (about 0.72 when frontal).
    RetinaFace's: yaw from the nose tip's offset from the face's midline, pitch from its drop below the eye line,
    both through a generic head's depth (see the slopes).
    """
    left, right = eye_centres(landmarks, order)
    axis = right - left
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return 0.0, 0.0, 0.0
    unit = axis / distance
    normal = np.array([-unit[1], unit[0]])  # pointing down the face
    eyes_mid = (left + right) / 2.0
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    nose = landmarks[2] if order == EYES_NOSE_MOUTH else landmarks[4]
    if order == DLIB_FIVE:
        along = float((nose - eyes_mid) @ unit) / (distance / 2.0)
        drop = float((nose - eyes_mid) @ normal) / distance
        yaw = math.degrees(math.asin(max(-1.0, min(1.0, along))))
        pitch = math.degrees(math.atan((drop - FRONTAL_NOSE_DROP) / FRONTAL_NOSE_DROP))
        return yaw, pitch, roll
    # The midline runs from the eyes' midpoint to the mouth's; the nose tip's offset from it is taken at its
    # own height. The mouth only gives the midline's direction: a smile moves the corners, not their midpoint's
    # side.
    mouth_mid = (landmarks[3] + landmarks[4]) / 2.0
    down = mouth_mid - eyes_mid
    nose_drop = float((nose - eyes_mid) @ normal)
    height = float(down @ normal)
    midline = eyes_mid + down * (nose_drop / height) if height > 1e-6 else eyes_mid
    offset = float((nose - midline) @ unit) / (distance / 2.0)
    yaw_rad = math.atan(offset / YAW_SLOPE)
    # The eye distance shrinks by cos(yaw) when the head turns; the drop does not.
    drop = nose_drop * math.cos(yaw_rad) / distance
    pitch = math.degrees(math.atan((drop - FRONTAL_NOSE_TIP_DROP) / PITCH_SLOPE))
    return math.degrees(yaw_rad), pitch, roll


def assess(image: np.ndarray, box: Box, landmarks: np.ndarray, order: str) -> Quality:
    left, right = eye_centres(landmarks, order)
    yaw, pitch, roll = pose_from_landmarks(landmarks, order)
    return Quality(
        face_height_px=box.height,
        inter_eye_px=float(np.hypot(*(right - left))),
        sharpness=sharpness(quality_chip(image, landmarks, order)),
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
    )

"""Face quality from the 5 landmarks and the chip: pure functions, no model."""

from __future__ import annotations

import math

import numpy as np

from openlfr.vision.types import Box, Quality

# Distance from the eye line down to the base of the nose, in eye distances, in a frontal face.
FRONTAL_NOSE_DROP = 0.72


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres from dlib's 5 points (two corners per eye, then nose)."""
    eye_a, eye_b = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)
    return (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)


def sharpness(chip: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the grey chip's central area."""
    grey = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    rows, cols = grey.shape
    inner = grey[rows // 6 : rows - rows // 6, cols // 6 : cols - cols // 6]
    laplacian = inner[:-2, 1:-1] + inner[2:, 1:-1] + inner[1:-1, :-2] + inner[1:-1, 2:] - 4.0 * inner[1:-1, 1:-1]
    return float(laplacian.var())


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Coarse (yaw, pitch, roll) in degrees from eye centres and the base of the nose.

    Yaw: the nose's sideways offset from the eyes' midpoint, relative to half the eye distance.
    Pitch: the nose's drop below the eye line relative to the eye distance; about 0.72 when frontal.
    """
    left, right = eye_centres(landmarks)
    nose = landmarks[4]
    axis = right - left
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return 0.0, 0.0, 0.0
    unit = axis / distance
    normal = np.array([-unit[1], unit[0]])
    mid = (left + right) / 2.0
    along = float((nose - mid) @ unit) / (distance / 2.0)
    drop = float((nose - mid) @ normal) / distance
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, along))))
    pitch = math.degrees(math.atan((drop - FRONTAL_NOSE_DROP) / FRONTAL_NOSE_DROP))
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    return yaw, pitch, roll


def assess(box: Box, landmarks: np.ndarray, chip: np.ndarray) -> Quality:
    left, right = eye_centres(landmarks)
    yaw, pitch, roll = pose_from_landmarks(landmarks)
    return Quality(
        face_height_px=box.height,
        inter_eye_px=float(np.hypot(*(right - left))),
        sharpness=sharpness(chip),
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
    )

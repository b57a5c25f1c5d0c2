"""Whether a detector's answer can be a face, checked before it becomes one anywhere (enrolment, search, live).

Every detector passes its detections through :func:`plausible` (RetinaFace and dlib's both), so no caller sees
a box no face could have: one far too flat or too tall, or five points in no face's layout (the mouth above the
eyes, the eyes wider apart than the face). Bounds are loose: on 668 real detections (LFW at two sizes, the
crowd pictures, the stills; profiles and faces cut by the picture's edge included) height/width lay between
0.76 and 3.1, the eye distance within 0.07-0.69 of the box's width, and the mouth 0.72-9.6 eye distances below
the eye line; none fails these checks.

A detection that is large in the network's input is also looked at again by its detector at the size it knows
best (``SECOND_LOOK_ABOVE_PX``, RetinaFace's ``confirmed``): past its largest anchors a texture can pass for a
face. A mosaic of 1,008 small faces on a 4800x4800 picture was one "face" 4552 px tall; it is not found again
around itself at 160 px, while every LFW face enlarged to 280-360 px was.
"""

from __future__ import annotations

import numpy as np

from openlfr.vision.types import Detection

MIN_ASPECT, MAX_ASPECT = 0.5, 4.0  # box height / width
MAX_EYES_IN_WIDTH = 1.2  # eye distance / box width
MIN_MOUTH_BELOW_EYES = 0.25  # in eye distances, along the face's own down (roll allowed)
LANDMARK_SLACK = 0.5  # points may lie this share of the box's size outside it
SECOND_LOOK_ABOVE_PX = 256  # taller than this in the network's input: looked at again


def implausible(detection: Detection) -> str | None:
    """Why this detection cannot be a face, or None when it can."""
    box = detection.box
    if box.width <= 0 or box.height <= 0:
        return "an empty box"
    if not MIN_ASPECT <= box.height / box.width <= MAX_ASPECT:
        return f"a box {box.width}x{box.height}, no face's shape"
    points = detection.landmarks
    if points is None:
        return None
    left_eye, right_eye, _nose, mouth_left, mouth_right = np.asarray(points, dtype=np.float64)
    eye_line = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_line))
    if eye_distance > MAX_EYES_IN_WIDTH * box.width:
        return "eyes wider apart than the face"
    slack_x, slack_y = LANDMARK_SLACK * box.width, LANDMARK_SLACK * box.height
    xs, ys = points[:, 0], points[:, 1]
    if (
        xs.min() < box.left - slack_x
        or xs.max() > box.right + slack_x
        or ys.min() < box.top - slack_y
        or ys.max() > box.bottom + slack_y
    ):
        return "eyes, nose or mouth outside the face"
    if eye_distance > 0:
        down = np.array([-eye_line[1], eye_line[0]]) / eye_distance
        mouth_below = float(((mouth_left + mouth_right) / 2 - (left_eye + right_eye) / 2) @ down) / eye_distance
        if mouth_below < MIN_MOUTH_BELOW_EYES:
            return "the mouth not below the eyes"
    return None


def plausible(detections: list[Detection]) -> list[Detection]:
    """The detections that can be faces, in order."""
    return [d for d in detections if implausible(d) is None]

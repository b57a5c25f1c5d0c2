"""The one match score OpenLFR shows, stores and thresholds: a number in [0, 1], higher = more alike.

    score = clip((cosine - floor) / (1 - floor), 0, 1)

``cosine`` is the dot product of two unit-norm embeddings of the same model; ``floor`` depends only on the
embedding model (its id without test-time options, e.g. ``dlib_resnet_v1`` for ``dlib_resnet_v1+flip``).
The map is monotone, so every threshold on the score is a threshold on the cosine and the calibration table
(score -> false match rate) is the same ranking as on the cosine. It is linear above the floor, so score
differences keep their meaning and ``cosine_from_score`` inverts it exactly above 0.

Why a floor: dlib's ResNet puts every face in a narrow cone. Different people already score cosines of
0.75-0.93 (all 16.5M pairs of people in LFW, flip averaging on: 1st percentile 0.751, median 0.839, 99.9th
percentile 0.929), and the best LFW verification threshold is a cosine of 0.912. A raw cosine of 0.84 reads
as "quite alike" to an operator but means "a typical stranger". The floor 0.75 is the 1st percentile of
those stranger cosines: 99% of strangers score above 0 and the typical one about 0.35; the LFW
verification threshold lands at 0.65 (close to the 0.64 the Met reports as its operating threshold on its
vendor's scale); false match rates of 1e-3, 1e-4, 1e-5 sit at about 0.72, 0.77, 0.82 (`openlfr calibrate`),
so the useful range of thresholds spreads over a third of the scale instead of the last 0.08 of the cosine.
MobileFaceNet (``mobilefacenet_v1``), trained with an ArcFace-style loss, spreads strangers around cosine 0
(the same 16.5M pairs of people, RetinaFace and flip averaging: 1st percentile -0.317, median 0.009, 99.9th
percentile 0.450), so its floor is -0.32 by the same rule. User-supplied ArcFace-style models (``onnx:...``
ids) are not measured: their floor is 0, the score the cosine clipped at 0. Each model's floor is in its
registry entry (``openlfr/face_models.py``); a new model gets its floor there after measuring it the same way.
"""

from __future__ import annotations

import numpy as np

from openlfr.face_models import score_floor

__all__ = ["cosine_from_score", "match_score", "score_floor"]


def match_score(cosine: np.ndarray | float, model_id: str) -> np.ndarray:
    """Cosine similarity (float or array) -> match score in [0, 1], as float64 of the same shape."""
    floor = score_floor(model_id)
    values = np.asarray(cosine, dtype=np.float64)
    return np.clip((values - floor) / (1.0 - floor), 0.0, 1.0)


def cosine_from_score(score: np.ndarray | float, model_id: str) -> np.ndarray:
    """The cosine at which the match score equals ``score`` (exact inverse above score 0)."""
    floor = score_floor(model_id)
    values = np.asarray(score, dtype=np.float64)
    if np.any((values < 0) | (values > 1)):
        raise ValueError("a match score lies in [0, 1]")
    return floor + values * (1.0 - floor)

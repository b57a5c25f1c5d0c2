"""OPENLFR_EXECUTION_PROVIDER (issue 21 item 4): the face models' ONNX Runtime provider, refused in words when this
installation lacks it; on a machine whose ONNX Runtime offers CUDA, the engine on the GPU against the CPU."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from openlfr.settings import ExecutionProvider, Settings, SettingsError, get_settings
from openlfr.vision.engine import FaceEngine, build_detector, build_engine
from openlfr.vision.providers import SESSION_PROVIDERS, ExecutionProviderUnavailable, describe_provider
from tests.conftest import OPENLFR_BIN

OFFERED = ort.get_available_providers()
MISSING: list[ExecutionProvider] = [name for name, wanted in SESSION_PROVIDERS.items() if wanted[0] not in OFFERED]


@pytest.mark.parametrize(
    "name",
    MISSING or [pytest.param("cuda", marks=pytest.mark.skip(reason=f"this ONNX Runtime offers them all: {OFFERED}"))],
)
def test_a_provider_this_onnx_runtime_lacks_is_refused_before_any_model_loads(name: ExecutionProvider) -> None:
    settings = Settings(execution_provider=name)
    for build in (build_engine, build_detector):
        with pytest.raises(ExecutionProviderUnavailable) as refused:
            build(settings)
        message = str(refused.value)
        # the provider asked for, what this installation offers, and what to install
        assert repr(name) in message and "CPUExecutionProvider" in message, message
        assert "pip install 'openlfr[" in message, message
        assert "\n" not in message


@pytest.mark.skipif(not MISSING, reason=f"this ONNX Runtime offers every provider: {OFFERED}")
def test_serve_refuses_a_missing_provider_before_it_starts(tmp_path: Path) -> None:
    env = {**os.environ, "OPENLFR_DATA_DIR": str(tmp_path), "OPENLFR_EXECUTION_PROVIDER": MISSING[0]}
    env.pop("OPENLFR_DATABASE_URL", None)
    served = subprocess.run(
        [str(OPENLFR_BIN), "serve", "--host", "127.0.0.1", "--port", "8766", "--no-pipelines"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert served.returncode != 0
    lines = served.stderr.strip().splitlines()
    assert len(lines) == 1 and f"execution provider {MISSING[0]!r}" in lines[0], served.stderr
    assert "Traceback" not in served.stderr


def test_an_unknown_provider_name_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLFR_EXECUTION_PROVIDER", "gpu")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="OPENLFR_EXECUTION_PROVIDER"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_cpu_is_the_default_and_runs_the_engine(engine: FaceEngine, astronaut: np.ndarray) -> None:
    assert Settings().execution_provider == "cpu"
    assert describe_provider("cpu").startswith("cpu (CPUExecutionProvider")
    (face,) = engine.faces(astronaut)
    assert face.embedding is not None and abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-4


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in OFFERED,
    reason=f"no GPU for the tests: this ONNX Runtime offers {', '.join(OFFERED)} (onnxruntime-gpu brings CUDA)",
)
def test_cuda_embeddings_match_the_cpus(engine: FaceEngine, astronaut: np.ndarray) -> None:
    on_gpu = build_engine(Settings(execution_provider="cuda"))
    (cpu_face,) = engine.faces(astronaut)
    (gpu_face,) = on_gpu.faces(astronaut)
    assert cpu_face.embedding is not None and gpu_face.embedding is not None
    # The same chips through both embedders (the network alone), then the whole engine (detection included).
    chips = np.stack([cpu_face.chip, cpu_face.chip[:, ::-1]])
    network = float(np.abs(on_gpu.embedder.embed(chips) - engine.embedder.embed(chips)).max())
    whole = float(np.abs(gpu_face.embedding - cpu_face.embedding).max())
    print(f"CUDA against CPU: max abs diff {network:.2e} (same chips), {whole:.2e} (whole engine)")
    assert network < 1e-2
    assert whole < 5e-2 and float(gpu_face.embedding @ cpu_face.embedding) > 0.99

"""Which ONNX Runtime execution provider runs the face models (``OPENLFR_EXECUTION_PROVIDER``).

Every ONNX Runtime session the engine creates goes through ``onnx_embedder._session``, which takes its provider
from here: ``build_engine`` and ``build_detector`` (``with_execution_provider``) set it from the settings they are
given for the time they build, so a detector and an embedder built from one settings object always run on the
same provider, and a process may hold engines on two providers (the CUDA-against-CPU test does).

A provider that is not installed is refused before any model loads, naming what ONNX Runtime offers and the
package that brings the one asked for: ``cuda`` and ``tensorrt`` come with ``onnxruntime-gpu`` (``openlfr[gpu]``;
TensorRT also needs NVIDIA's TensorRT libraries), ``openvino`` with ``onnxruntime-openvino``
(``openlfr[openvino]``); each replaces the ``onnxruntime`` package rather than sitting beside it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import onnxruntime as ort

from openlfr.errors import ModelError
from openlfr.settings import ExecutionProvider, Settings

# What each setting asks ONNX Runtime for, best first; the CPU provider always comes last, for the few operators
# an accelerator lacks.
SESSION_PROVIDERS: dict[ExecutionProvider, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "openvino": ("OpenVINOExecutionProvider", "CPUExecutionProvider"),
}
INSTALL_HINT: dict[ExecutionProvider, str] = {
    "cpu": "onnxruntime",
    "cuda": "onnxruntime-gpu in place of onnxruntime (pip install 'openlfr[gpu]')",
    "tensorrt": "onnxruntime-gpu in place of onnxruntime (pip install 'openlfr[gpu]') and NVIDIA's TensorRT",
    "openvino": "onnxruntime-openvino in place of onnxruntime (pip install 'openlfr[openvino]')",
}

_current: contextvars.ContextVar[str] = contextvars.ContextVar("openlfr_execution_provider", default="cpu")


class ExecutionProviderUnavailable(ModelError):
    """The execution provider the settings ask for is not in this ONNX Runtime; the message says what is, and
    what to install."""


def available() -> list[str]:
    return list(ort.get_available_providers())


def check_provider(name: ExecutionProvider | str) -> tuple[str, ...]:
    """The ONNX Runtime providers a session on ``name`` asks for; refused when ONNX Runtime lacks the first."""
    wanted = next((providers for known, providers in SESSION_PROVIDERS.items() if known == name), None)
    if wanted is None:
        raise ExecutionProviderUnavailable(
            f"unknown execution provider {name!r} (OPENLFR_EXECUTION_PROVIDER): choose one of "
            f"{', '.join(SESSION_PROVIDERS)}"
        )
    offered = available()
    if wanted[0] not in offered:
        raise ExecutionProviderUnavailable(
            f"execution provider {name!r} (OPENLFR_EXECUTION_PROVIDER) needs ONNX Runtime's {wanted[0]}, which this "
            f"installation (onnxruntime {ort.__version__}) lacks: it offers {', '.join(offered)}; install "
            f"{next(hint for known, hint in INSTALL_HINT.items() if known == name)}"
        )
    return tuple(p for p in wanted if p in offered)


def describe_provider(name: ExecutionProvider | str) -> str:
    """One line for start-up messages and benchmark reports: ``cpu (CPUExecutionProvider, onnxruntime 1.x)``."""
    return f"{name} ({', '.join(check_provider(name))}, onnxruntime {ort.__version__})"


def session_providers() -> tuple[str, ...]:
    """The providers of the session being built now (see ``with_execution_provider``)."""
    return check_provider(_current.get())


P = ParamSpec("P")
R = TypeVar("R")


def with_execution_provider(build: Callable[P, R]) -> Callable[P, R]:
    """Wrap a builder whose first argument is the ``Settings``: the sessions it creates run on their provider,
    and an unavailable one is refused before anything loads."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        settings = args[0] if args else kwargs["settings"]
        assert isinstance(settings, Settings)
        check_provider(settings.execution_provider)
        token = _current.set(settings.execution_provider)
        try:
            return build(*args, **kwargs)
        finally:
            _current.reset(token)

    return wrapper


def provider_line(settings: Settings | None = None) -> str:
    """What a benchmark prints first: the execution provider its figures were measured on."""
    return f"execution provider: {describe_provider((settings or Settings()).execution_provider)}"

"""One typed settings object for the whole system, read from ``OPENLFR_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENLFR_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("openlfr")))
    cache_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("openlfr")))
    # Real test data lives outside the repository; tests and benchmarks find it here.
    test_data: Path = Path("../shared/data")

    # Face engine
    detector: str = "hog"  # "hog" or "mmod"
    upsample: int = 1
    onnx_threads: int = 0  # 0 lets ONNX Runtime choose
    embedder_model: Path | None = None  # a user-supplied ArcFace-style ONNX file; None = dlib ResNet
    flip_average: bool = True
    # Refuse images whose pixel count would exhaust memory (decompression bombs).
    max_image_pixels: int = 60_000_000

    database_url: str | None = None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'openlfr.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

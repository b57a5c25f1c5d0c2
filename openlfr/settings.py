"""One typed settings object for the whole system, read from ``OPENLFR_*`` environment variables over the
configuration file (``openlfr.toml``, its sections mapped onto these fields: openlfr/config_file.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from openlfr.config_file import ConfigFileSource, NestedEnvSource, SinkSettings, config_path, section_table
from openlfr.errors import OpenLFRError
from openlfr.face_models import DetectorName, EmbedderName

ExecutionProvider = Literal["cpu", "cuda", "tensorrt", "openvino"]


class StreamSettings(BaseSettings):
    """The live pipeline's configuration (``settings.stream``: the runner and its camera processes read it there,
    nowhere else), from ``OPENLFR_STREAM_*``. What runs on which frame is explained in openlfr/stream/pipeline.py."""

    model_config = SettingsConfigDict(env_prefix="OPENLFR_STREAM_", extra="ignore", frozen=True)

    detect_interval_s: float = 0.2  # whole-picture detection at most this often; faces are tracked between
    # Live sources only: whole-picture detection takes at most this share of the analysis time, so that an
    # overloaded machine still follows its tracks between detections instead of detecting on every frame it
    # manages to analyse (files read as fast as possible keep the fixed interval: results do not depend on load).
    detect_share: float = 0.5
    track_between: bool = True  # follow known faces on the frames in between
    detect_upsample: int = 0  # HOG upsampling on video: 0 finds faces from ~70 px, 1 from ~40 px (4x cost)
    # Whole-picture detection searches a copy scaled by this; None: the detector's own (``live_scale``: RetinaFace
    # 0.5, the one whose CPU budget for 1080p at 25 fps fits two cores: README "Detection, landmarks and quality";
    # HOG 1).
    detect_scale: float | None = Field(default=None, gt=0.0, le=4.0)
    # Shorter faces are ignored (a camera's own min_face_px overrides it). RetinaFace's half-size search finds
    # faces from ~20 px; following them from 32 px means a person walking in is tracked before the face is big
    # enough to embed (the quality gate's inter-eye distance), and sampled the moment it is. On the 1080p clip:
    # 558 faces seen against 506 at 40 px, no frame dropped.
    min_face_px: int = Field(default=32, ge=1)
    window_margin: float = 0.5  # track-local search window: the predicted box grown by this on every side
    # The window is scaled so the face is about this tall; None: the detector's own (``search_face_px``: HOG 80 px,
    # RetinaFace 46 px, 0.75x the pixels of 56 px; a track's empty window is searched once more at the detector's
    # ``retry_face_px``, RetinaFace 56 px, so the faces 46 px misses are found: stream/pipeline.py).
    window_face_px: int | None = None
    max_age_s: float = 1.0  # a track unseen this long has ended
    embed_budget: int = 10  # embeddings per track at most
    embed_gap_s: float = 0.15  # between two samples of one track, at least
    # New embeddings per analysed frame at most (0: no cap); the rest wait a frame. A crowd walking into view
    # asks for a first sample of every face at once: embedding ~20 ms a face, this keeps a frame near its share
    # of a core at 25 fps instead of spending the next frames' time (which a live camera would drop).
    embed_per_frame: int = Field(default=2, ge=0)
    max_sample_gap_s: float = 1.0  # the doubling gaps stop growing here
    better_by: float = 0.1  # a face this much better (Quality.score) than any embedded is sampled early
    look_interval_s: float = 0.1  # between samples, faces are looked at (landmarks, quality) this often at most
    # Quality gate for a sample (openlfr/vision/quality.py). On LFW, RetinaFace's yaw reads 1.18x dlib's old
    # estimate and sharpness on the canonical chip 3.5x the old chip's: these are the old gate (45 deg, 2.0) in
    # the new units.
    min_inter_eye_px: float = 14.0
    max_yaw_deg: float = 53.0
    max_pitch_deg: float = 35.0
    min_sharpness: float = 7.0
    # A look is sampled only if one of the track's looks before it, this many at most, passed the gate too (0: the
    # look alone), so one look's landmark jitter never decides whether a face is embedded. Every track that one
    # camera alone embedded and a camera of three missed (benchmarks/cameras.py) had passed on one look only: a
    # 33 px face read 15 px between the eyes once and 10-12 px on fifty other looks.
    gate_confirm_looks: int = Field(default=2, ge=0, le=10)
    evidence_k: int = 2  # an alert needs k of a track's last n samples to name the same person
    evidence_n: int = 5
    # Track fusion (stream/evidence.py): a track's looks fused into one quality-weighted template, searched as the
    # track grows; it alerts when the template reaches the threshold from the k-th look on, besides the k-of-n vote.
    track_fusion: bool = True
    cooldown_s: float = 60.0  # after an alert for a person on a camera, their other tracks stay quiet
    top_k: int = 5  # candidates kept per sample and shown with an alert
    probe_margin: float = 0.5  # the alert's probe crop: the face box grown by this on every side
    reid_min_score: float = 0.75  # match score between two faces for a lost track to be picked up again
    reconnect_attempts: int = 10  # consecutive failed (re)connections before a live camera is given up
    # Frames in flight per camera (one analysed, the rest waiting); beyond that new frames are dropped, never
    # queued. Eight at 25 fps hold the ~300 ms a burst of new faces to embed can take on two cores.
    queue_frames: int = Field(default=8, ge=1, le=64)
    # Live sources: a waiting frame older than this is dropped in favour of a newer one (bounded latency); a
    # younger backlog is worked off in order, so a burst costs latency, not frames.
    max_lag_s: float = Field(default=0.3, ge=0.0, le=10.0)
    # Live sources running behind (a frame waiting over half of max_lag_s) on a frame that leaves sampling to a
    # later one: each track is followed only if unseen this long (every other frame at 25 fps), so an overloaded
    # box follows its faces at half rate instead of dropping whole frames. 0: every frame regardless.
    behind_follow_gap_s: float = Field(default=0.07, ge=0.0, le=1.0)
    # Live sources: whole-picture detection in a process of its own beside each camera's analysis, so tracks are
    # followed frame by frame while it runs (uses a second core per camera when there is one).
    detector_process: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENLFR_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("openlfr")))
    cache_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("openlfr")))
    # Real test data lives outside the repository; tests and benchmarks find it here.
    test_data: Path = Path("../shared/data")

    # Face engine
    # Face models by their names in the registry (openlfr/face_models.py); an unknown name is refused, listing them.
    # detector: retinaface (MobileNet-0.25: boxes, scores and five landmarks), hog or mmod (dlib's HOG and CNN).
    detector: DetectorName = "retinaface"
    detector_scale: float = Field(default=1.0, ge=0.05, le=4.0)  # RetinaFace: resize by this before the network
    detector_min_score: float = Field(default=0.5, gt=0.0, lt=1.0)  # RetinaFace: confidence a detection needs
    upsample: int = 1  # dlib detectors: times the image is doubled before the search
    onnx_threads: int = 0  # 0 lets ONNX Runtime choose
    # The ONNX Runtime execution provider of every face model (openlfr/vision/providers.py): cuda and tensorrt need
    # onnxruntime-gpu (openlfr[gpu]), openvino onnxruntime-openvino (openlfr[openvino]); refused when not installed.
    execution_provider: ExecutionProvider = "cpu"
    embedder: EmbedderName = "mobilefacenet"  # mobilefacenet (192-D, ArcFace chips), dlib (128-D ResNet) or sface
    embedder_model: Path | None = None  # a user-supplied ArcFace-style ONNX file; overrides `embedder` when set
    flip_average: bool = True
    # Stills profile (enrolment, benchmarks): extra test-time views; live video uses flip averaging only.
    stills_jitter: int = 8
    stills_second_alignment: bool = True
    # Refuse images whose pixel count would exhaust memory (decompression bombs).
    max_image_pixels: int = 60_000_000

    # Matching (openlfr.watchlist.search / calibration). Exact search up to this many reference embeddings,
    # a FAISS IVF index above (benchmarks/search.py: exact 1M x 128 is tens of ms per probe, the index ~1 ms).
    search_approximate_above: int = 200_000
    search_ivf_nprobe: int = 64  # index cells searched per probe: recall against speed
    # Search one template per listed person (their reference photos' mean embedding) instead of each photo
    # (openlfr.watchlist.templates; issue 22: fewer misses at the same false-alert rate on LFW).
    search_person_templates: bool = True
    # A second opinion (openlfr.watchlist.second_opinion): "sface" re-scores with SFace the few candidates whose
    # MobileFaceNet score reaches the screen (0.64: 1 false alert in 10 faces on 840 people), and alerts on the
    # fused score at the threshold of its own shipped table; "off": MobileFaceNet alone. Used only where it can
    # change a decision and its table measures the target (openlfr/services/second_opinion.py); needs SFace
    # embeddings of the references (made at enrolment, or by `openlfr watchlist reembed`): a watchlist without
    # them is searched by MobileFaceNet alone, and says so.
    second_opinion: Literal["sface", "off"] = "sface"
    # A calibration table (`openlfr calibrate --out FILE`); None = the user's own from `openlfr calibrate`
    # in data_dir, else the one shipped for the model.
    calibration_file: Path | None = None

    database_url: str | None = None

    # Watchlist enrolment: the quality gate a reference photo must pass, each limit where 1% of LFW's 13,233 faces
    # would fail it (RetinaFace's landmarks, openlfr/vision/quality.py; derivation in the README's face engine
    # section): 1% fall below 31.2 px between the eye centres and sharpness 31 (measured on the canonical 112x112
    # chip; a face blurred by a Gaussian of an eye distance / 12 scores 3 on median, at most 8); 1% turn more
    # than 49.6 deg or tip more than 34.2 deg. Yaw and pitch are coarse landmark estimates in degrees.
    enrol_min_inter_eye_px: float = 31.0
    enrol_min_sharpness: float = 31.0
    enrol_max_yaw_deg: float = 50.0
    enrol_max_pitch_deg: float = 34.0
    # A new photo whose match score (openlfr.watchlist.score) against an active listed person under another id
    # reaches this is refused as a duplicate. 0.8 is a cosine of 0.95 for dlib's model; on LFW that is 3e-5 of
    # different-person pairs, 2/3 of same-person pairs of different photos, and every re-use of a photo.
    enrol_duplicate_score: float = 0.8
    # Detect on a copy no larger than this (long side, px) and analyse the face at full resolution. RetinaFace's
    # anchors reach 512 px: a portrait's face detected at a larger scale breaks into several boxes (the shared
    # gallery at 1280 px: 3 and 2 "faces" in two single-person photos; at 960 and 640 px: one each).
    enrol_detect_max_side: int = 640
    watchlist_entry_days: float = 30.0  # default life of a watchlist entry when `--expires` is not given

    # Operator server (`openlfr serve`)
    server_host: str = "127.0.0.1"
    server_port: int = Field(default=8400, ge=1, le=65535)
    # Prometheus metrics (counts only) without a login on their own address, for `openlfr serve`, `worker` and `scan`;
    # port 0: off (the server's /metrics still answers admins). Bind it where only the metrics collector reaches.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    session_hours: float = 12.0
    cookie_secure: bool = False  # force the Secure flag (it is set anyway whenever the request came over https)
    # Failed logins for one user name from one address within the window before that address is refused logins
    # for it: a stranger's guesses from elsewhere do not lock the user out of their own address.
    login_max_failures: int = 5
    # Failed logins and failed bearer tokens from one client address, whatever the names, before it is refused both.
    login_ip_max_failures: int = 20
    # Failed logins for one user name from all addresses together (NIST SP 800-63B's ceiling for an account).
    login_name_max_failures: int = 100
    login_window_seconds: int = 900
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 2
    # Password checks running at once in one server process (each takes argon2_memory_kib); more logins wait.
    login_concurrent_checks: int = Field(default=2, ge=1)
    max_upload_bytes: int = 10_000_000
    # An uploaded photo (enrolment, photo search) declaring more pixels than this is refused from its header,
    # before decoding: the enrolment gate works at full resolution, and 7,700 x 7,700 took 58 s and 6.7 GB there.
    max_upload_pixels: int = Field(default=24_000_000, ge=1)
    max_json_bytes: int = 1_000_000
    audit_key: str | None = None  # HMAC key of the audit chain; default: a key file made once in data_dir
    snapshot_retention_seconds: float = 24 * 3600  # watchlist snapshot destroyed this long after a deployment
    probe_retention_seconds: float = 31 * 24 * 3600  # alert probe images purged this long after the alert
    # A photo search's candidates' reference pictures are shown to the person who ran it, for this long after it
    # (each view audited); never otherwise, so the pictures of a watchlist cannot be browsed by id.
    search_reference_seconds: float = Field(default=900.0, gt=0)
    # watchlist entries (person, photos, embeddings) removed this long after they expired: time to renew a lapse
    expired_entry_retention_seconds: float = 7 * 24 * 3600
    retention_interval_seconds: float = 30.0  # how often the server enforces retention
    deployment_max_window_hours: float = Field(default=24.0, gt=0)  # a longer window is refused at authorisation
    # The zone of the places deployments run in (an IANA name: Europe/London): the console's times are entered and
    # shown in it, and named with it; the API and the database keep UTC.
    time_zone: str = "UTC"
    # Retrospective searches (RFR) read recorded files only from these directories (separated by os.pathsep, ':'
    # on Linux; empty: none allowed), chosen by the admin who runs the server.
    rfr_source_dirs: str = ""
    # An urgent retrospective search runs first and must be authorised within this many hours (EU AI Act
    # Art. 26(10): 48); past that its alerts are destroyed by the retention sweep.
    rfr_authorise_within_hours: float = Field(default=48.0, gt=0)
    # Footage uploaded for retrospective searches (PUT /api/footage, kept in data_dir/rfr-footage): at most this large
    # a file; deleted once every search naming it has stopped, or after this many hours if none names it.
    rfr_max_upload_bytes: int = Field(default=4_000_000_000, ge=1)
    rfr_unused_footage_hours: float = Field(default=24.0, gt=0)
    # A worker holds each camera it runs under a lease of this many seconds, renewed every sixth of it; a dead
    # worker's cameras are taken over by another within it (runtime/deployment_run.py).
    camera_lease_seconds: float = Field(default=30.0, ge=3.0, le=3600.0)
    # A deployment's pipeline that fails this many times in a row for the same reason (a source that cannot be
    # decoded) is not restarted again: its run stays "failed" and says why, instead of restarting until the window
    # ends (runtime/deployment_run.py).
    pipeline_max_same_failures: int = Field(default=5, ge=1)
    # A camera with no new frame for this long is "stalled" (console, /health, metrics, sinks): OPENLFR_STREAM_
    # STALL_SECONDS, beside the pipeline's settings but read by the run that watches it (runtime/camera_health.py).
    stream_stall_seconds: float = Field(default=5.0, gt=0.0, le=3600.0)
    worker_name: str = ""  # how this machine signs its camera leases; empty: the host name
    # The camera networks and hosts a live camera may be read from, chosen by the admin who runs the server: CIDR
    # networks (10.20.0.0/16) and host names (cam1.example.org; a leading dot, .example.org, allows every name under
    # it), separated by commas. Checked when a deployment is drafted and each time a camera is connected; a name is
    # allowed by name or when every address it resolves to lies in an allowed network. Empty (the default): any host.
    camera_allowed_hosts: str = ""
    # Fernet key (urlsafe base64, 32 bytes) sealing camera URLs that carry credentials in the database; default: a
    # key file made once in data_dir (camera.key, mode 0600). Every server and worker on one database needs the same.
    camera_key: str | None = None
    require_second_verifier: bool = True  # default of the console setting (EU AI Act Art. 14(5))
    tile_blur_scene: bool = True  # camera tiles: pixelate the whole picture but alerted faces (detectors miss faces)

    # Live pipeline (`openlfr scan`, deployments): the stream section, OPENLFR_STREAM_* (see StreamSettings).
    stream: StreamSettings = Field(default_factory=lambda: StreamSettings())
    # `openlfr scan` without --threshold or --target-fpir: the false-alert rate the threshold is chosen for.
    scan_target_fpir: float = 1e-3
    # A scan records itself as a deployment of the local user; it may match for at most this long.
    scan_max_hours: float = 12.0
    # At its end a scan waits this long for its sinks to take what is pending (the rest is sent by the next scan to
    # the same sink, or by serve/worker for a configured one).
    scan_delivery_wait_seconds: float = Field(default=15.0, ge=0.0, le=3600.0)
    # Where a deployment's events are sent, by name: OPENLFR_SINKS (a JSON object, name -> SinkSettings) or the
    # file's [sinks.NAME] sections. A deployment names the ones it uses (docs/sinks.md).
    sinks: dict[str, SinkSettings] = Field(default_factory=dict)
    # A failed delivery is tried again after 1 s, doubling up to this, until the alert's probe retention ends.
    delivery_retry_max_seconds: float = Field(default=60.0, ge=0.1, le=3600.0)
    # The console's address as officers reach it, for the alert's link in a sink's payload (empty: no link).
    server_public_url: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The flat names first (OPENLFR_SERVER_PORT), then the nested ones (OPENLFR_SERVER__PORT), then the file.
        return (
            init_settings,
            env_settings,
            NestedEnvSource(settings_cls),
            dotenv_settings,
            ConfigFileSource(settings_cls, config_path()),
            file_secret_settings,
        )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone's IANA name (such as UTC or Europe/London)") from None
        return value

    @field_validator("stream", mode="before")
    @classmethod
    def _stream_variables_over_the_file(cls, value: Any) -> Any:
        """A [stream] section (or OPENLFR_STREAM__KEY) arrives as a dict, which pydantic validates without reading
        the environment: the flat OPENLFR_STREAM_* variables are laid over it here, so they still win."""
        if not isinstance(value, dict):
            return value
        from_environment = StreamSettings()
        return {**value, **from_environment.model_dump(include=from_environment.model_fields_set)}

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'openlfr.db'}"


class SettingsError(OpenLFRError):
    """An ``OPENLFR_*`` variable holds a value the settings refuse."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:  # one line naming the variable or the file's key, never pydantic's report
        first = exc.errors()[0]
        raise SettingsError(f"{_where(exc.title, first['loc'])}={first.get('input')!s}: {first['msg']}") from exc


def _where(title: str, loc: tuple[int | str, ...]) -> str:
    """The variable a refused value was read from, and its ``[section] key`` when a configuration file is used."""
    parts = [str(part) for part in loc]
    if title == StreamSettings.__name__ or parts[0] == "stream":
        variable, place = "OPENLFR_STREAM_" + "_".join(parts[-1:]).upper(), f"[stream] {parts[-1]}"
    elif parts[0] == "sinks":
        variable, place = "OPENLFR_SINKS__" + "__".join(parts[1:3]).upper(), f"[sinks.{'.'.join(parts[1:2])}]"
    else:
        variable = "OPENLFR_" + "_".join(parts).upper()
        found = [
            (s, k) for s, keys in section_table(Settings.model_fields).items() for k, f in keys.items() if f == parts[0]
        ]
        place = (f"[{found[0][0]}] {found[0][1]}" if found[0][0] else found[0][1]) if found else parts[0]
    return f"{variable} (or {place} in {config_path()})" if config_path() is not None else variable

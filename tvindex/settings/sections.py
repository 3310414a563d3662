"""The configuration's section models: one pydantic model per section of
``config/default.yaml``, and :class:`Settings`, their root. A feature with settings of its own
adds its section model in a module of this package (``tvindex/settings/<feature>.py``), a
field on :class:`Settings`, and its documented keys in ``config/default.yaml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

# The sections' base lives in settings/base.py: feature modules subclass it from there, as
# this module imports them for Settings (importing _Section from here would be a cycle).
from tvindex.settings.base import _Section, no_nul  # noqa: F401  (re-exported)


class PathsSettings(_Section):
    model_dir: Path | None = None
    cache_dir: Path = Path("~/.cache/tvindex/models")
    data_dir: Path = Path("./var")
    shared_dir: Path | None = None
    # Folders the web server may serve media from (empty: any folder, see config/default.yaml).
    media_roots: list[Path] = Field(default_factory=list)

    @field_validator("model_dir", "cache_dir", "data_dir", "shared_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return None if v is None else Path(os.path.expanduser(str(v)))

    @field_validator("media_roots", mode="after")
    @classmethod
    def _expand_roots(cls, v: list[Path]) -> list[Path]:
        return [Path(os.path.expanduser(str(p))) for p in v]


class ModelsSettings(_Section):
    allow_download: bool = False


class SamplingSettings(_Section):
    mode: Literal["interval", "keyframes", "shots"] = "interval"
    every_s: float = Field(10.0, gt=0)
    frames_per_shot: int = Field(1, ge=1, le=16)
    shot_threshold: float = Field(27.0, gt=0)
    min_shot_s: float = Field(0.6, ge=0)
    max_side: int | None = Field(720, ge=32)
    # shot detector of `shots` mode (indexer.media.shot_detectors) and TransNetV2's threshold
    shot_detector: Literal["content", "gradual", "transnetv2", "hybrid"] = "content"
    transition_threshold: float = Field(0.5, gt=0, lt=1)


class YoloSettings(_Section):
    weights: str = "yolov8n.pt"
    image_size: int = Field(640, ge=32)


class Places365Settings(_Section):
    arch: Literal["resnet18", "resnet50"] = "resnet18"
    weights: str = "resnet18_places365.pth.tar"
    categories: str = "categories_places365.txt"
    image_size: int = Field(224, ge=32)


class TfliteDetectorSettings(_Section):
    weights: str = "mobilenet_ssd_v2_coco_quant_postprocess.tflite"
    labels: str = "coco_labels.txt"
    threads: int = Field(2, ge=1)


class TimmClassifierSettings(_Section):
    arch: str = "tf_efficientnet_lite0"
    weights: str = "efficientnet-lite0-57934424.pth"
    label_set: str = "imagenet1k"
    labels: str | None = None
    image_size: int = Field(224, ge=32)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


class StudentSettings(_Section):
    checkpoint: str = "var/models/student.pt"
    image_size: int | None = Field(None, ge=32)


# Imported here, below _Section, which they subclass.
from tvindex.settings.student_onnx import StudentOnnxSettings
from tvindex.settings.visual import OpenClipSettings, VisualSettings


class TaggersSettings(_Section):
    active: list[str] = Field(default_factory=lambda: ["tflite-detector", "timm-classifier"])
    batch_size: int = Field(16, ge=1, le=4096)
    device: str = "auto"
    mixed_precision: bool = True
    yolo: YoloSettings = Field(default_factory=YoloSettings)
    places365: Places365Settings = Field(default_factory=Places365Settings)
    tflite_detector: TfliteDetectorSettings = Field(
        default_factory=TfliteDetectorSettings, alias="tflite-detector"
    )
    timm_classifier: TimmClassifierSettings = Field(
        default_factory=TimmClassifierSettings, alias="timm-classifier"
    )
    student: StudentSettings = Field(default_factory=StudentSettings)
    student_onnx: StudentOnnxSettings = Field(default_factory=StudentOnnxSettings,
                                              alias="student-onnx")
    openclip: OpenClipSettings = Field(default_factory=OpenClipSettings)
    # Which active tagger's pooled features become the frame embeddings (similar shots,
    # episodes, programmes; query by example): "auto" = the student when active, else the
    # first active tagger that has features (timm-classifier, places365); "none" = none.
    embedding: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not v.startswith("cuda:"):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    def for_tagger(self, name: str) -> BaseModel | None:
        """The settings block of a tagger by registry name (None when it has none)."""
        block = getattr(self, name.replace("-", "_"), None)
        return block if isinstance(block, BaseModel) else None


class AggregationSettings(_Section):
    coverage_threshold: dict[str, float] = Field(
        default_factory=lambda: {"default_sigmoid": 0.5, "default_softmax": 0.2})
    store_min_score: float = Field(0.05, ge=0, le=1)
    store_top_k: int = Field(10, ge=0, le=1000)
    thumbnail_width: int = Field(320, ge=32, le=1920)

    @field_validator("coverage_threshold")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for key in ("default_sigmoid", "default_softmax"):
            if key not in v:
                raise ValueError(f"needs a {key} entry")
        for key, t in v.items():
            if not 0.0 < t <= 1.0:
                raise ValueError(f"{key}: threshold must be in (0, 1], got {t}")
        return v


class CatalogueSettings(_Section):
    backend: Literal["sqlite", "elasticsearch"] = "sqlite"
    sqlite_path: Path | None = None


class ElasticsearchSettings(_Section):
    url: str = "http://127.0.0.1:9200"
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    retry_backoff_s: float = Field(0.5, ge=0)
    index_prefix: str = Field("tvindex-", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    shards: int = Field(1, ge=1, le=1024)
    replicas: int = Field(1, ge=0, le=16)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    threads: int = Field(4, ge=1, le=256)
    api_key: str | None = Field(None, min_length=16)
    max_request_bytes: int = Field(65536, ge=1024)
    max_query_length: int = Field(500, ge=16, le=1000)  # the parser stops at 1000
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_upload_pixels: int = Field(40_000_000, ge=10_000)
    # Pictures decoded at once (query by example); more uploads wait their turn.
    max_concurrent_decodes: int = Field(1, ge=1, le=64)
    # Host names the server answers (DNS rebinding); null = localhost, 127.0.0.1, ::1 and
    # server.host; ["*"] = any.
    allowed_hosts: list[str] | None = None
    # waitress: open connections at most, idle seconds before a connection is closed, and
    # seconds a request may take to send its headers / its whole body (slow clients).
    connection_limit: int = Field(1000, ge=1, le=100_000)
    channel_timeout_s: float = Field(30.0, gt=0, le=3600)
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    request_timeout_s: float = Field(60.0, gt=0, le=3600)
    backlog: int = Field(1024, ge=1, le=65535)
    # Origins allowed to call the API from a browser (CORS): scheme://host[:port], exactly as
    # browsers send them; empty = no CORS headers at all.
    cors_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = Field(
        default_factory=list)
    # Per client address: a token bucket refilled at rate_limit_per_minute / 60 a second, holding
    # at most rate_limit_burst tokens (null = rate_limit_per_minute); 0 = off.
    rate_limit_per_minute: int = Field(600, ge=0, le=10_000_000)
    rate_limit_burst: int | None = Field(None, ge=1, le=10_000_000)


class RecommendSettings(_Section):
    """Similar programmes/episodes: a blend of embedding cosine and label-profile cosine."""

    # 0.7 / 0.3: see config/default.yaml (the demo's leave-one-episode-out weight sweep).
    embedding_weight: float = Field(0.7, ge=0)
    label_weight: float = Field(0.3, ge=0)
    # Labels whose mean score in an item is below this do not count towards document
    # frequency in the TF-IDF label profile.
    idf_min_score: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _weights(self) -> RecommendSettings:
        if self.embedding_weight + self.label_weight <= 0:
            raise ValueError("embedding_weight + label_weight must be > 0")
        return self


class VectorsSettings(_Section):
    """The FAISS vector indexes kept beside the store (search/vectors.py)."""

    # Folder of the indexes; null = <paths.data_dir>/vectors.
    dir: Path | None = None
    # Below this many vectors the index is exact (brute force); at or above, IVF-SQ8.
    exact_threshold: int = Field(50_000, ge=1)
    # IVF cells scanned per query; null = nlist / 64, at least 8.
    nprobe: int | None = Field(None, ge=1)
    # Search on a GPU copy when FAISS is a GPU build and a GPU is present.
    use_gpu: bool = True


from tvindex.settings.pictures import PicturesSettings
from tvindex.settings.vocabulary import VocabularySettings
from tvindex.settings.words import WordsSettings


class Settings(_Section):
    paths: PathsSettings = Field(default_factory=PathsSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    taggers: TaggersSettings = Field(default_factory=TaggersSettings)
    aggregation: AggregationSettings = Field(default_factory=AggregationSettings)
    catalogue: CatalogueSettings = Field(default_factory=CatalogueSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    vectors: VectorsSettings = Field(default_factory=VectorsSettings)
    pictures: PicturesSettings = Field(default_factory=PicturesSettings)
    vocabulary: VocabularySettings = Field(default_factory=VocabularySettings)
    words: WordsSettings = Field(default_factory=WordsSettings)
    visual: VisualSettings = Field(default_factory=VisualSettings)

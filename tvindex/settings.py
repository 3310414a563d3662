"""Configuration: one documented YAML file (config/default.yaml), validated on load.

Order of precedence, later wins: the defaults file, a user file (``--config``), environment
variables (``TVINDEX__SECTION__KEY=value`` parsed as YAML, plus short aliases for paths), then
command-line flags, which callers pass to :func:`load_settings` as ``overrides``.

:func:`load_config` is the loader underneath (YAML files, environment tree, dotted overrides,
pydantic validation, :class:`ConfigError` messages); the training configuration
(``training.distill.config``) loads through it too.

Hostile input is one :class:`ConfigError`, never a traceback: a file is read up to
:data:`CONFIG_MAX_BYTES` and must be UTF-8; YAML anchors and aliases are refused (a few
hundred bytes of aliases expand to gigabytes) and nesting is bounded; numbers must be finite;
error messages never show the value of a secret (keys named like key, password, token,
secret, credential) nor the user:password of a URL, and say where a bad value came from.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tvindex.core.config_input import (
    YAML_ERRORS,
    is_secret,
    one_line,
    parse_yaml,
    redact,
    safe_repr,
    yaml_problem,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.yaml"
ENV_PREFIX = "TVINDEX__"
ENV_ALIASES = {
    "TVINDEX_MODEL_DIR": ("paths", "model_dir"),
    "TVINDEX_DATA_DIR": ("paths", "data_dir"),
    "TVINDEX_SHARED_DIR": ("paths", "shared_dir"),
    "ELASTICSEARCH_URL": ("elasticsearch", "url"),
}


ModelT = TypeVar("ModelT", bound=BaseModel)

# A configuration file larger than this is refused (config/default.yaml, every key with its
# documentation, is about 12 KiB; pure-Python YAML parses some 100 KiB a second).
CONFIG_MAX_BYTES = 256 * 1024
_MAX_ENV_KEYS = 8  # parts of a TVINDEX__A__B__... name
_MAX_ERRORS = 10  # validation problems listed in one message


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


class _Section(BaseModel):
    # allow_inf_nan=False: every float, in lists, tuples and dicts too, must be finite.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return no_nul(v)


def no_nul(value: Any) -> Any:
    """``value``, refused when a text or path in it (or in its list) holds a NUL character,
    which no file name, host or key can hold (the OS would raise ValueError much later)."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    if any(isinstance(x, (str, Path)) and "\x00" in str(x) for x in items):
        raise ValueError("must not contain a NUL character")
    return value


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
    cors_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = []
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


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict[str, Any], keys: list[str], value: Any, source: str = "") -> None:
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            where = f" (from {source})" if source else ""
            raise ConfigError(f"{one_line('.'.join(keys))}: {one_line(k)} is not a section"
                              + where)
    node[keys[-1]] = value


def yaml_value(text: str) -> Any:
    """A value given in the environment or on the command line: parsed as YAML with the
    configuration loader when it parses, else the text itself."""
    try:
        return parse_yaml(text)
    except YAML_ERRORS:
        return text


def _read_yaml(path: Path) -> dict[str, Any]:
    name = one_line(path, 200)
    try:
        with open(path, "rb") as f:  # any kind of file: at most the cap (+1 to notice more)
            raw = f.read(CONFIG_MAX_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {name}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{name}: is a directory, not a configuration file") from exc
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the configuration file: "
                          f"{exc.strerror or exc}") from exc
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError(f"{name}: larger than {CONFIG_MAX_BYTES // 1024} KiB; a "
                          "configuration file holds only the keys it changes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from exc
    try:
        data = parse_yaml(text) or {}
    except YAML_ERRORS as exc:
        # from None: the YAML error's own text quotes the document, which may hold a secret
        raise ConfigError(f"{name}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the top level must be a mapping of sections")
    return data


def _env_tree(environ: Mapping[str, str] | None) -> tuple[dict[str, Any], dict[tuple, str]]:
    """The environment's overrides as a nested dict, and the variable behind each key path."""
    environ = dict(os.environ if environ is None else environ)
    tree: dict[str, Any] = {}
    names: dict[tuple, str] = {}
    for var, keys in ENV_ALIASES.items():
        if environ.get(var):
            _set_dotted(tree, list(keys), environ[var], var)
            names[tuple(keys)] = var
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in var[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            raise ConfigError(f"{one_line(var)}: no key after {ENV_PREFIX} (expected "
                              f"{ENV_PREFIX}SECTION__KEY=value)")
        if len(keys) > _MAX_ENV_KEYS:
            raise ConfigError(f"{one_line(var)}: nested deeper than {_MAX_ENV_KEYS} keys")
        # Tagger sections are spelled with '-' in YAML; env names cannot hold '-'.
        keys = [k.replace("_", "-") if k in ("tflite_detector", "timm_classifier") else k
                for k in keys]
        _set_dotted(tree, keys, yaml_value(raw), one_line(var))
        names[tuple(keys)] = one_line(var)
    return tree, names


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Overrides found in the environment, as a nested dict."""
    return _env_tree(environ)[0]


def _where(loc: tuple, env_names: Mapping[tuple, str], given: Mapping[str, Any],
           files: list[tuple[Path, dict[str, Any]]]) -> str:
    """Where the value at ``loc`` came from: ' (from VAR)', ' (in FILE)' or ''."""
    if any(loc[:len(k.split("."))] == tuple(k.split(".")) for k in given):
        return ""
    env = [keys for keys in env_names if loc[:len(keys)] == keys]
    if env:
        return f" (from {env_names[max(env, key=len)]})"
    for path, tree in reversed(files):
        node: Any = tree
        for part in loc:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            return f" (in {one_line(str(path), 200)})"
    return ""


def _known_keys(model: Any, path: tuple) -> list[str]:
    """The keys the section at ``path`` of ``model`` accepts (aliases as YAML spells them),
    or none when ``path`` does not lead to a section model."""
    node = model
    for part in path:
        fields = getattr(node, "model_fields", {}) if isinstance(node, type) else {}
        field = next((f for n, f in fields.items() if part in (n, f.alias)), None)
        node = field.annotation if field is not None else None
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return []
    return [f.alias or n for n, f in node.model_fields.items()]


def _unknown_key_hint(model: Any, loc: tuple) -> str:
    """'; did you mean every_s?' for a misspelt key, or ''."""
    import difflib

    close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc[:-1]), n=3)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _describe(err: ValidationError, what: str = "configuration",
              where: Any = lambda loc: "", model: Any = None) -> str:
    lines = []
    errors = err.errors()
    for e in errors[:_MAX_ERRORS]:
        loc = tuple(e["loc"])
        key = one_line(".".join(str(p) for p in loc), 120)
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key{_unknown_key_hint(model, loc)}{where(loc)}")
            continue
        given, msg = e.get("input"), str(e["msg"])
        if any(is_secret(p) for p in loc):  # say what is wrong, never the value
            if isinstance(given, str) and given:
                msg = msg.replace(given, "***")
            lines.append(f"{key}: {one_line(redact(msg), 200)}{where(loc)}")
        else:
            msg, got = one_line(redact(msg), 200), safe_repr(given)
            src = where(loc).strip()
            lines.append(f"{key}: {msg} (got {got}{', ' + src[1:-1] if src else ''})")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"and {len(errors) - _MAX_ERRORS} more")
    return f"invalid {what}: " + "; ".join(lines)


def load_config(
    model: type[ModelT],
    files: Iterable[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, Any] | None = None,
    env_names: Mapping[tuple, str] | None = None,
    what: str = "configuration",
) -> ModelT:
    """The one configuration loader: merge the YAML ``files`` in order (each must exist and
    hold a mapping), then ``env`` (a nested tree, as :func:`env_overrides` makes; ``env_names``
    maps its key paths to the variables, for messages), then ``overrides`` (dotted keys such
    as ``optim.lr``, or nested dicts, set as given), and validate the result with the
    pydantic ``model``. Any problem is a :class:`ConfigError` naming the key; validation
    errors read ``invalid <what>: key: why (got value, from VAR or in FILE); ...``, never
    showing a secret."""
    tree: dict[str, Any] = {}
    read = [(Path(path), _read_yaml(Path(path))) for path in files]
    for _, data in read:
        tree = _merge(tree, data)
    if env is not None:
        tree = _merge(tree, dict(env))
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key.split("."), value)
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        def where(loc: tuple) -> str:
            return _where(loc, env_names or {}, overrides or {}, read)
        raise ConfigError(_describe(exc, what, where, model)) from None


def load_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Load and validate the settings. ``overrides`` maps dotted keys (``sampling.every_s``)
    or nested dicts to values, for command-line flags; ``None`` values are ignored."""
    files = [DEFAULT_CONFIG] if DEFAULT_CONFIG.exists() else []
    if config_file is not None:
        files.append(Path(config_file))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    env, names = _env_tree(environ)
    return load_config(Settings, files, given, env=env, env_names=names)

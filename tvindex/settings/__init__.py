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
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tvindex.core.config_input import (
    YAML_ERRORS,
    is_secret,
    one_line,
    parse_yaml,
    redact,
    safe_repr,
    yaml_problem,
)
from tvindex.settings.sections import (  # noqa: F401  (re-exported: the public names)
    AggregationSettings,
    CatalogueSettings,
    ElasticsearchSettings,
    ModelsSettings,
    PathsSettings,
    Places365Settings,
    RecommendSettings,
    SamplingSettings,
    ServerSettings,
    Settings,
    StudentSettings,
    TaggersSettings,
    TfliteDetectorSettings,
    TimmClassifierSettings,
    VectorsSettings,
    YoloSettings,
    _Section,
    no_nul,
)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
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
# Tagger sections spelled with '-' in YAML, as their environment names spell them.
_HYPHENATED = ("tflite_detector", "timm_classifier", "student_onnx")
_MAX_ERRORS = 10  # validation problems listed in one message


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


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
        keys = [k.replace("_", "-") if k in _HYPHENATED else k for k in keys]
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

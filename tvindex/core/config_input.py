"""Configuration text from untrusted hands, made safe to load and to quote.

``parse_yaml``: a ``yaml.SafeLoader`` that refuses anchors and aliases (a few hundred bytes
of aliases expand to gigabytes) and nesting deeper than :data:`MAX_DEPTH` (deep flow
collections cost the pure-Python scanner quadratic time, deep nodes recursion); its problems
(:data:`YAML_ERRORS`) read as one line by ``yaml_problem``, without the document's snippet.
``safe_repr`` and ``redact``: values quoted in error messages, short, one line, with the
values of secret-named keys (key, password, token, secret, credential) and the
user:password of URLs masked. ``tvindex.settings`` uses both.
"""

from __future__ import annotations

import itertools
import re
import reprlib
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.scanner import ScannerError

MAX_DEPTH = 32  # nesting levels of a YAML document
# ValueError: a date such as 2024-13-45, an integer of more than 4300 digits.
YAML_ERRORS = (yaml.YAMLError, ValueError, OverflowError)
_SECRET = re.compile(r"key|passw|token|secret|credential", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")


class _ConfigLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise ScannerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                               self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, "anchors and aliases (&name, *name) are not "
                                "allowed in configuration", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str) -> Any:
    """One YAML document, safely; raises one of :data:`YAML_ERRORS`."""
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def one_line(text: object, limit: int = 80) -> str:
    """``text`` on one line (control characters escaped), at most about ``limit`` chars."""
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m[0]):02x}", str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def yaml_problem(exc: BaseException) -> str:
    """What is wrong and where, on one line, without the snippet of the document (which
    could show a secret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        what = ": ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid"
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return one_line(what, 200) + where
    return one_line(" ".join(str(exc).split()), 200)


def is_secret(name: object) -> bool:
    """Whether a key's value must never be shown (api_key, password, token, ...)."""
    return isinstance(name, str) and _SECRET.search(name) is not None


def redact(text: str) -> str:
    """``text`` with the user:password@ of every URL masked."""
    return _URL_USERINFO.sub(r"\1***@", text)


class _SafeRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple = 3, 6, 6, 6
        self.maxstring = self.maxother = 60

    def repr_str(self, x: str, level: int) -> str:
        return super().repr_str(redact(x), level)

    def repr_dict(self, x: dict, level: int) -> str:
        head = itertools.islice(x.items(), self.maxdict + 1)
        return super().repr_dict({k: "***" if is_secret(k) else v for k, v in head}, level)


def safe_repr(value: Any) -> str:
    """A short, shallow, one-line repr of a configuration value, secrets masked."""
    return one_line(_SafeRepr().repr(value), 200)

"""The field metadata of goldloop.toml's sections, read in one place.

Each section of :mod:`goldloop.config` is a dataclass whose fields carry ``help``,
``choices``, ``min`` and ``max`` metadata. :func:`settings_of` turns a section into plain
:class:`Setting` descriptions, from which the reference page (:mod:`goldloop.config_reference`)
and command-line options (``goldloop train``'s, from ``[trl]``) are derived;
:func:`build_section` checks values read from the file against the same descriptions.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

from .errors import ConfigError


def setting(default: Any, help: str, choices: tuple[str, ...] | None = None, minimum: float | None = None,
            maximum: float | None = None) -> Any:
    """A section field with its default and metadata (a list default is copied per instance)."""
    meta = {"help": help, "choices": choices, "min": minimum, "max": maximum}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    """One key of a section: its type (bool, int, float, str, list or dict), default and rules."""

    name: str
    kind: type
    item: type | None            # the element type of a list
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


def settings_of(section_cls: type) -> list[Setting]:
    """Every key of a section class, in declaration order.

    >>> from goldloop.config import EvaluateConfig
    >>> [(s.name, s.kind.__name__, s.default) for s in settings_of(EvaluateConfig)]
    [('bootstrap', 'int', 1000), ('confidence', 'float', 0.95)]
    """
    hints = get_type_hints(section_cls)
    instance = section_cls()
    found = []
    for f in dataclasses.fields(section_cls):
        hint = hints[f.name]
        kind = get_origin(hint) or hint
        item = (get_args(hint) or (str,))[0] if kind is list else None
        meta = f.metadata
        found.append(Setting(f.name, kind, item, getattr(instance, f.name), meta["help"], meta.get("choices"),
                             meta.get("min"), meta.get("max")))
    return found


def suggest(name: str, options: Any) -> str:
    """"; did you mean 'x'?" for a close option, else the list of known ones."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(options))}"


def build_section(section_cls: type, section: str, values: dict[str, Any], source: str) -> Any:
    """An instance of ``section_cls`` from the file's ``[section]`` table; every error names the key."""
    known = {s.name: s for s in settings_of(section_cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key [{section}] {key}{suggest(key, known)}")
        kwargs[key] = check_value(f"[{section}] {key}", known[key], value, source)
    return section_cls(**kwargs)


def check_value(where: str, spec: Setting, value: Any, source: str) -> Any:
    """``value`` when it has the setting's type and lies within its choices and bounds."""
    kind = spec.kind
    bad = f"{source}: {where} "
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(bad + f"must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(bad + f"must be a whole number, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(bad + f"must be a number, got {value!r}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(bad + f"must be a string, got {value!r}")
    elif kind is list:
        item = spec.item or str
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(bad + f"must be a list of {item.__name__}s, got {value!r}")
    elif kind is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(bad + f"must be a table of strings, got {value!r}")
    if kind is list and where.endswith("_patterns"):
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(bad + f"holds an invalid regular expression {pattern!r}: {exc}") from exc
    if spec.choices and value not in spec.choices:
        raise ConfigError(bad + f"must be one of {', '.join(spec.choices)}; got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(bad + f"must be at least {spec.minimum}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(bad + f"must be at most {spec.maximum}, got {value!r}")
    return value

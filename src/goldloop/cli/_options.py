"""Command-line options derived from a goldloop.toml section, as TRL's TrlParser derives them
from its config dataclasses: each setting is declared once, with its help, type and bounds.

An option's default is None, meaning "not given": :func:`with_options` then keeps the
section's value, so a value on the command line wins over goldloop.toml, which wins over
the setting's default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from .._config_fields import Setting, settings_of


def option_name(setting_name: str) -> str:
    """``--max-steps`` for ``max_steps``."""
    return "--" + setting_name.replace("_", "-")


def section_options(section_cls: type, section: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one option per key of ``section_cls``, passed as a keyword of the key's name."""
    specs = settings_of(section_cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for spec in reversed(specs):             # click lists the option applied last first
            fn = click.option(option_name(spec.name), spec.name, type=_click_type(spec), default=None,
                              help=f"{spec.help} Default: [{section}] {spec.name} in goldloop.toml, "
                                   f"else {spec.default!r}.")(fn)
        return fn

    return decorate


def with_options(values: Any, given: dict[str, Any]) -> Any:
    """A copy of the section ``values`` with each option that was given (not None) put in."""
    return dataclasses.replace(values, **{k: v for k, v in given.items() if v is not None})


def _click_type(spec: Setting) -> click.ParamType:
    if spec.choices:
        return click.Choice(spec.choices)
    bounded = spec.minimum is not None or spec.maximum is not None
    if spec.kind is int:
        return click.IntRange(spec.minimum, spec.maximum) if bounded else click.INT  # type: ignore[arg-type]
    if spec.kind is float:
        return click.FloatRange(spec.minimum, spec.maximum) if bounded else click.FLOAT
    if spec.kind is str:
        return click.STRING
    raise TypeError(f"setting {spec.name!r} is a {spec.kind.__name__}: only numbers, strings and choices "
                    "have a command-line option")

"""The reference page of every goldloop.toml setting, rendered from the typed configuration.

``goldloop config-reference`` prints it and docs/configuration.md holds it byte for byte (a
test compares them), so the page cannot drift from what the loader accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._config_fields import settings_of
from .config import CONFIG_FILE, Config


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md) as Markdown: one table per section.

    >>> "| `per_label` | int | `12` |" in reference_markdown()
    True
    """
    lines = ["# Configuration reference", "",
             f"Every setting of `{CONFIG_FILE}`, generated from goldloop's typed configuration "
             "(`goldloop config-reference` prints this page).", ""]
    for section in dataclasses.fields(Config):
        lines += [f"## [{section.name}]", "", "| key | type | default | what it does |", "|---|---|---|---|"]
        for s in settings_of(section.default_factory):  # type: ignore[arg-type]
            help_text = s.help.replace("|", "\\|")
            if s.choices:
                help_text += " One of: " + ", ".join(f"`{c}`" for c in s.choices) + "."
            lines.append(f"| `{s.name}` | {s.kind.__name__} | `{_toml_literal(s.default)}` | {help_text} |")
        lines.append("")
    return "\n".join(lines)


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value).replace("'", '"')

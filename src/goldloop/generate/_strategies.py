"""Generation strategies: each turns a few gold-train seeds of one label into LLM requests.

A strategy has a versioned name (``paraphrase.v1``) that goes into every record's
provenance, declares what it reads and writes, and renders its prompts from sandboxed
Jinja2 templates in which gold text is inserted as data (one line, inside fixed markers),
so text in the data cannot change a template's structure or instructions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import ClassVar

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from ..errors import ConfigError
from ..records import Record

_WS = re.compile(r"\s+")


def oneline(value: object) -> str:
    """Data as one line, with the chat template's data markers neutralised."""
    text = _WS.sub(" ", str(value)).strip()
    return text.replace("<data>", "\u2039data\u203a").replace("</data>", "\u2039/data\u203a")


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["oneline"] = oneline
    return env


_ENV = _environment()


def _template_source(name: str) -> str:
    return files("goldloop.generate").joinpath("templates", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: text for completion mode, messages for chat mode."""

    text: str | None
    messages: tuple[dict[str, str], ...] | None
    stop: tuple[str, ...]


class Strategy:
    """Base class. Subclasses set ``name``, ``inputs``, ``outputs`` and template names."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]]
    templates: ClassVar[dict[str, str]]     # part -> template file

    def template_hash(self, mode: str) -> str:
        parts = [p for p in sorted(self.templates) if (p == "completion") == (mode == "completion")]
        blob = "\0".join(f"{p}\0{_template_source(self.templates[p])}" for p in parts)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def render(self, mode: str, label: str, seeds: list[Record], *, item_name: str, description: str,
               seed_words: int) -> Prompt:
        examples = [" ".join(s.text.split()[:seed_words]) for s in seeds]
        context = {"label": label, "description": description, "item_name": item_name, "examples": examples}
        if mode == "completion":
            text = _ENV.from_string(_template_source(self.templates["completion"])).render(context)
            return Prompt(text=text, messages=None, stop=("\n",))
        system = _ENV.from_string(_template_source(self.templates["system"])).render(context)
        user = _ENV.from_string(_template_source(self.templates["user"])).render(context)
        return Prompt(text=None, messages=({"role": "system", "content": system},
                                           {"role": "user", "content": user}), stop=())

    def parse(self, reply: str, item_name: str) -> str:
        """The candidate text in a reply: its first non-empty line, without a numbering prefix."""
        for line in reply.splitlines():
            line = line.strip()
            if line:
                return re.sub(rf"^(?:{re.escape(item_name)}\s*\d+\s*:|\d+[.):])\s*", "", line,
                              flags=re.IGNORECASE).strip().strip('"').strip()
        return ""


class Paraphrase(Strategy):
    """New examples of one label, close in topic and style to a few gold-train seeds."""

    name = "paraphrase.v1"
    inputs = ("gold-train records of one label: text",)
    outputs = ("text", "label")
    templates = {"completion": "paraphrase.v1.completion.j2", "system": "paraphrase.v1.system.j2",
                 "user": "paraphrase.v1.user.j2"}


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Paraphrase,)}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"goldloop.toml: [generate] strategies names unknown strategy {name!r}; "
                          f"known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]()

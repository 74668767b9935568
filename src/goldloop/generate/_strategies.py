"""Generation strategies: each turns a few gold-train seeds of one label into LLM requests.

A strategy has a versioned name (``paraphrase.v1``) that goes into every record's
provenance, declares what it reads and writes, chooses the examples each request shows
(:meth:`Strategy.choose_seeds`), and renders its prompts from sandboxed
Jinja2 templates in which gold text, domain rules and weaknesses are inserted as data (one
line, inside fixed markers), so text in the data cannot change a template's structure or
instructions.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, ClassVar

from jinja2 import FunctionLoader, StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from ..config import GenerateConfig
from ..errors import ConfigError
from ..records import Record

_WS = re.compile(r"\s+")


def oneline(value: object) -> str:
    """Data as one line, with the chat template's data markers neutralised."""
    text = _WS.sub(" ", str(value)).strip()
    return text.replace("<data>", "\u2039data\u203a").replace("</data>", "\u2039/data\u203a")


def _template_source(name: str) -> str:
    return files("goldloop.generate").joinpath("templates", name).read_text(encoding="utf-8")


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=FunctionLoader(_template_source), undefined=StrictUndefined,
                               autoescape=False, keep_trailing_newline=False)
    env.filters["oneline"] = oneline
    return env


_ENV = _environment()


def _with_includes(names: Iterable[str]) -> list[str]:
    """The named templates and every template they include, each once, sorted.

    Found by parsing, not declared by hand, so a shared include cannot be left out of a
    strategy's template hash.
    """
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for ref in meta.find_referenced_templates(_ENV.parse(_template_source(name))):
            if ref is None:
                raise ValueError(f"template {name} includes a template by a computed name")
            todo.append(ref)
    return sorted(seen)


@dataclass(frozen=True)
class Rules:
    """The project's domain rules, shown as data in every prompt of every strategy."""

    must: tuple[str, ...] = ()
    must_not: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()
    red_lines: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, g: GenerateConfig) -> Rules:
        """The rules of ``[generate]``, without blank entries (which would render as empty markers)."""
        def kept(items: Iterable[str]) -> tuple[str, ...]:
            return tuple(str(item) for item in items if str(item).strip())

        return cls(kept(g.rules_must), kept(g.rules_must_not), kept(g.vocabulary), kept(g.red_lines))

    def __bool__(self) -> bool:
        return bool(self.must or self.must_not or self.vocabulary or self.red_lines)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: text for completion mode, messages for chat mode."""

    text: str | None
    messages: tuple[dict[str, str], ...] | None
    stop: tuple[str, ...]


_SEEDS = "gold-train records of one label: text"
_RULES = "[generate] rules_must, rules_must_not, vocabulary, red_lines"


class Strategy:
    """Base class. Subclasses set ``name``, ``inputs``, ``outputs`` and template names."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]]
    templates: ClassVar[dict[str, str]]     # part ("completion", "system", "user") -> template file
    # Whether choose_seeds looks at accepted drafts: the planners read them from the store only then.
    reads_accepted: ClassVar[bool] = False

    def template_hash(self, mode: str) -> str:
        """A hash of every template file the mode renders, shared includes too: it goes into provenance."""
        parts = [p for p in sorted(self.templates) if (p == "completion") == (mode == "completion")]
        names = _with_includes(self.templates[p] for p in parts)
        blob = "\0".join(f"{name}\0{_template_source(name)}" for name in names)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def plan_labels(self, labels: Sequence[str], g: GenerateConfig) -> dict[str, str]:
        """The labels this strategy drafts for in a round, each with the weakness it aims at ("": none)."""
        return dict.fromkeys(labels, "")

    def choose_seeds(self, rng: random.Random, gold: Sequence[Record], accepted: Sequence[Record],
                     k: int) -> list[Record]:
        """The examples one request shows, in prompt order; their ids become the draft's ``parents``.

        ``gold``: gold-train records of the label already drawn for this request by the planner
        (at random, a plan line's own seeds first), at most ``k``. ``accepted``: drafts of the
        label that reviewers accepted in earlier rounds (see
        :func:`goldloop.generate.accepted_drafts`), sorted by id. ``rng``: the planner's
        generator for this strategy and label, so the choice is the same every time the round
        is planned. The default shows the gold records as drawn and no drafts, which keeps the
        requests (and their keys) of strategies that do not learn from review unchanged.
        """
        return list(gold)[:k]

    def render(self, mode: str, label: str, seeds: list[Record], *, item_name: str, description: str,
               seed_words: int, rules: Rules | None = None, weakness: str = "") -> Prompt:
        examples = [" ".join(s.text.split()[:seed_words]) for s in seeds]
        context = {"label": label, "description": description, "item_name": item_name, "examples": examples,
                   "rules": rules if rules is not None else Rules(), "weakness": weakness}
        if mode == "completion":
            text = _ENV.get_template(self.templates["completion"]).render(context)
            return Prompt(text=text, messages=None, stop=("\n",))
        system = _ENV.get_template(self.templates["system"]).render(context)
        user = _ENV.get_template(self.templates["user"]).render(context)
        return Prompt(text=None, messages=({"role": "system", "content": system},
                                           {"role": "user", "content": user}), stop=())

    # The structured reply a chat endpoint is asked for when [llm] structured_output is on.
    json_schema: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {"text": {"type": "string", "minLength": 1}},
        "required": ["text"], "additionalProperties": False}

    def parse(self, reply: str, item_name: str, parsed: Any = None) -> str:
        """The candidate text in a reply: the validated JSON's ``text`` when the reply was
        structured, else its first non-empty line without a numbering prefix."""
        if isinstance(parsed, dict) and isinstance(parsed.get("text"), str):
            reply = parsed["text"]
        for line in reply.splitlines():
            line = line.strip()
            if line:
                return re.sub(rf"^(?:{re.escape(item_name)}\s*\d+\s*:|\d+[.):])\s*", "", line,
                              flags=re.IGNORECASE).strip().strip('"').strip()
        return ""


def _templates(name: str) -> dict[str, str]:
    return {part: f"{name}.{part}.j2" for part in ("completion", "system", "user")}


class Paraphrase(Strategy):
    """New examples of one label, close in topic and style to a few gold-train seeds."""

    name = "paraphrase.v1"
    inputs = (_SEEDS, _RULES)
    outputs = ("text", "label")
    templates = _templates(name)


class Harder(Strategy):
    """Harder examples of one label: ambiguous or difficult, yet correctly labelled.

    Seeds drawn from gold are mostly typical cases; a classifier trained only on those is
    brittle near the label's borders, which is where these examples sit.
    """

    name = "harder.v1"
    inputs = (_SEEDS, _RULES)
    outputs = ("text", "label")
    templates = _templates(name)


class EdgeCase(Strategy):
    """Rare but valid situations for one label, which a small gold set seldom contains."""

    name = "edge_case.v1"
    inputs = (_SEEDS, _RULES)
    outputs = ("text", "label")
    templates = _templates(name)


class Targeted(Strategy):
    """Examples of one label aimed at a stated weakness (two labels confused, low recall).

    The weakness comes from ``[generate] targets`` as a description in words, and the seeds
    from gold-train records: held-out text never reaches the prompt, so evaluation on it
    stays honest.
    """

    name = "targeted.v1"
    inputs = (_SEEDS, "[generate] targets[label]: the weakness, in words", _RULES)
    outputs = ("text", "label")
    templates = _templates(name)

    def plan_labels(self, labels: Sequence[str], g: GenerateConfig) -> dict[str, str]:
        """Only the labels named in ``[generate] targets``.

        A missing or mistyped entry is an error rather than a round that quietly drafts
        nothing for the weakness it was meant to fix.
        """
        if not g.targets:
            raise ConfigError("goldloop.toml: [generate] strategies lists targeted.v1 but [generate] targets is "
                              "empty; describe each weakness to aim at, e.g. "
                              "targets = { \"billing\" = \"confused with account: refund of a locked card\" }")
        unknown = sorted(set(g.targets) - set(labels))
        if unknown:
            raise ConfigError(f"goldloop.toml: [generate] targets names {', '.join(map(repr, unknown))}, which "
                              f"the gold training data does not have; labels: {', '.join(labels)}")
        blank = sorted(label for label, text in g.targets.items() if not str(text).strip())
        if blank:
            raise ConfigError(f"goldloop.toml: [generate] targets gives {', '.join(map(repr, blank))} an empty "
                              f"description; describe the weakness in words")
        return {label: str(g.targets[label]) for label in labels if label in g.targets}

    def render(self, mode: str, label: str, seeds: list[Record], *, item_name: str, description: str,
               seed_words: int, rules: Rules | None = None, weakness: str = "") -> Prompt:
        if not weakness.strip():
            raise ValueError(f"{self.name} needs the weakness to aim at for label {label!r}")
        return super().render(mode, label, seeds, item_name=item_name, description=description,
                              seed_words=seed_words, rules=rules, weakness=weakness)


class LabelConditioned(Strategy):
    """New examples written from the label's name and plain-language meaning first.

    The prompt opens with the label and its ``[generate] label_descriptions`` entry, then shows
    a few gold-train seeds drawn afresh for every request, so the seeds rotate across a
    round's requests: the model learns the label from its meaning rather than copying one
    fixed handful of examples.
    """

    name = "label.v1"
    inputs = ("[generate] label_descriptions[label]: the label's meaning, in words", _SEEDS, _RULES)
    outputs = ("text", "label")
    templates = _templates(name)


class Feedback(LabelConditioned):
    """Like ``label.v1``, with drafts reviewers accepted in earlier rounds among the examples.

    Up to half of the ``[generate] seeds_per_prompt`` examples are accepted drafts of the label
    (a synthetic record with a standing accept, or a reviewer's edited copy, from a round
    before the current one), the rest gold-train seeds: at least one gold seed is always shown,
    so what reviewers approved steers the drafts without replacing real data. A label with no
    accepted drafts yet, or a prompt of one example, shows gold seeds only. Every example shown
    becomes a ``parents`` entry of the draft, so lineage reaches the gold seeds through the
    accepted drafts too.
    """

    name = "feedback.v1"
    inputs = ("[generate] label_descriptions[label]: the label's meaning, in words", _SEEDS,
              "reviewer-accepted drafts of the label from earlier rounds (synthetic or edited records): text",
              _RULES)
    outputs = ("text", "label")
    templates = _templates(name)
    reads_accepted = True

    def choose_seeds(self, rng: random.Random, gold: Sequence[Record], accepted: Sequence[Record],
                     k: int) -> list[Record]:
        """Gold seeds with up to ``k // 2`` accepted drafts (never more drafts than gold), mixed."""
        gold = list(gold)
        drafts = min(k // 2, len(accepted), len(gold))
        if drafts == 0:
            return gold[:k]
        chosen = gold[:k - drafts] + rng.sample(list(accepted), drafts)
        rng.shuffle(chosen)
        return chosen


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Paraphrase, Harder, EdgeCase, Targeted,
                                                                    LabelConditioned, Feedback)}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"goldloop.toml: [generate] strategies names unknown strategy {name!r}; "
                          f"known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]()

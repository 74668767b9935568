"""The plan: how many candidates each label gets from each strategy in a round, and why.

Made from an :class:`~goldloop.analysis.Analysis` before any compute is spent:

- ``targeted.v1`` for confused label pairs, seeded by the gold-train records misread that way
  and told the weakness in words (label names, counts, gold-train terms: never held-out text);
- ``edge_case.v1`` for labels whose held-out recall is low, seeded by their misread records;
- ``paraphrase.v1`` for thin labels (few gold-train records).

The plan is written to ``plans/round-N.toml`` in the project, one ``[[line]]`` per label and
strategy with its reason. The file is the plan: edit counts, delete or add lines, and the
loop drafts what the file says; a line may name any registered strategy (``label.v1`` and
``feedback.v1`` too, which the analysis does not plan by itself). A plan read back is
checked like any input (known labels and strategies, seeds from gold-train only, no
held-out text in a weakness).
"""

from __future__ import annotations

import random
import re
import tomllib
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from .analysis import Analysis
from .config import Config
from .errors import ConfigError
from .generate import STRATEGIES, PlannedRequest, Rules, accepted_drafts, get_strategy
from .generate._runner import build_request
from .llm import LLM
from .records import Record, content_hash
from .store import Store

PLAN_DIR = "plans"
FORMAT = "goldloop.plan.v1"
SHINGLE = 8                 # a weakness may not repeat this many consecutive words of a held-out record
_WORDS = re.compile(r"\w+")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class PlanLine:
    """Draft ``count`` candidates of ``label`` with ``strategy``; ``seeds`` are gold-train ids to start from."""

    label: str
    strategy: str
    count: int
    reason: str
    weakness: str = ""
    seeds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "strategy": self.strategy, "count": self.count, "reason": self.reason,
                "weakness": self.weakness, "seeds": list(self.seeds)}


@dataclass
class Plan:
    """A round's plan. ``source``: ``analysis`` (as made) or ``edited`` (the file was changed)."""

    round: int
    lines: list[PlanLine]
    source: str = "analysis"

    @property
    def total(self) -> int:
        return sum(line.count for line in self.lines)

    def by_strategy(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for line in self.lines:
            counts[line.strategy] += line.count
        return dict(sorted(counts.items()))

    def fingerprint(self) -> str:
        """A hash of the lines: the same plan has the same fingerprint wherever it was written."""
        return content_hash(self.round, [line.to_json() for line in self.lines])[:16]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "round": self.round, "source": self.source, "total": self.total,
                "by_strategy": self.by_strategy(), "fingerprint": self.fingerprint(),
                "lines": [line.to_json() for line in self.lines]}

    def to_toml(self) -> str:
        header = (f"# goldloop plan for round {self.round}: candidates per label and strategy, with the reason.\n"
                  "# Edit `count`, delete or add [[line]] entries, then run `goldloop loop`: it drafts what this\n"
                  "# file says. `seeds` are gold-train record ids the prompts start from (empty: any of the\n"
                  "# label's). `weakness` (required by targeted.v1) describes the weakness in words: never paste\n"
                  "# held-out text here.\n\n")
        return header + tomli_w.dumps({"format": FORMAT, "round": self.round,
                                       "line": [line.to_json() for line in self.lines]})

    def requests(self, store: Store, cfg: Config, llm: LLM) -> list[PlannedRequest]:
        """The round's generation requests, the same every time for the same plan, store and config.

        Each request draws ``[generate] seeds_per_prompt`` gold-train records of its label: the
        line's seeds first (drawn at random), then others of the label. The line's strategy
        then chooses what the prompt shows from those and the drafts reviewers accepted in
        earlier rounds (:meth:`~goldloop.generate.Strategy.choose_seeds`; only ``feedback.v1``
        uses the drafts, which are read from the store once, and only when a line needs them).
        """
        by_label: dict[str, list[Record]] = {}
        for rec in store.records(origin="gold", split="train"):
            by_label.setdefault(rec.label, []).append(rec)
        rules = Rules.from_config(cfg.generate)
        per = cfg.generate.seeds_per_prompt
        strategies = {line.strategy: get_strategy(line.strategy) for line in self.lines}
        needs_drafts = any(s.reads_accepted for s in strategies.values())
        accepted = accepted_drafts(store, self.round) if needs_drafts else {}
        used: Counter[tuple[str, str]] = Counter()        # keeps positions distinct across lines
        planned: list[PlannedRequest] = []
        for index, line in enumerate(self.lines):
            pool = sorted(by_label.get(line.label, []), key=lambda r: r.id)
            preferred = [r for r in pool if r.id in set(line.seeds)]
            others = [r for r in pool if r.id not in set(line.seeds)]
            rng = random.Random(content_hash(cfg.project.seed, self.round, line.strategy, line.label, index))
            for _ in range(line.count):
                seeds = rng.sample(preferred, min(per, len(preferred)))
                seeds += rng.sample(others, min(per - len(seeds), len(others)))
                seeds = strategies[line.strategy].choose_seeds(rng, seeds, accepted.get(line.label, []), per)
                position = used[(line.strategy, line.label)]
                used[(line.strategy, line.label)] += 1
                planned.append(build_request(cfg, llm, line.strategy, line.label, seeds, self.round, position,
                                             weakness=line.weakness, rules=rules))
        return planned


def allocate(total: int, weights: Mapping[K, float], minimum: int = 1) -> dict[K, int]:
    """Split ``total`` over the keys in proportion to their weights (largest remainder).

    Keys with no weight get nothing; when a share would fall under ``minimum``, the weakest
    keys are left out until every remaining share reaches it.

    >>> allocate(10, {"a": 3.0, "b": 1.0, "c": 0.1}, minimum=2)
    {'a': 8, 'b': 2}
    """
    keys = sorted((k for k, w in weights.items() if w > 0), key=lambda k: (-weights[k], str(k)))
    if total <= 0 or not keys:
        return {}
    while True:
        mass = sum(weights[k] for k in keys)
        raw = {k: total * weights[k] / mass for k in keys}
        if len(keys) == 1 or min(raw.values()) >= minimum:
            break
        keys.pop()
    out = {k: int(raw[k]) for k in keys}
    for k in sorted(keys, key=lambda k: (-(raw[k] - out[k]), -weights[k], str(k)))[:total - sum(out.values())]:
        out[k] += 1
    return {k: out[k] for k in keys if out[k] > 0}


def make_plan(analysis: Analysis, cfg: Config) -> Plan:
    """The plan for ``analysis.round``: ``[loop] candidates_per_round`` spread over the weaknesses found."""
    lc = cfg.loop
    candidates: dict[str, dict[tuple[str, str], float]] = {name: {} for name in
                                                           ("targeted.v1", "edge_case.v1", "paraphrase.v1")}
    details: dict[tuple[str, str, str], tuple[str, str, tuple[str, ...]]] = {}

    confused = [c for c in analysis.confusions
                if max(c.heldout, len(c.train_ids)) >= lc.min_confusions][:lc.max_confused_pairs]
    for c in confused:
        figures = analysis.labels[c.label]
        share = c.heldout / c.heldout_support if c.heldout_support else 0.0
        candidates["targeted.v1"][(c.label, c.read_as)] = share + len(c.train_ids) / max(1, figures.gold_train)
        reason = (f"{c.heldout} of {c.heldout_support} held-out {c.label} records predicted {c.read_as}; "
                  f"{len(c.train_ids)} gold-train records misread that way in cross-validation")
        details[("targeted.v1", c.label, c.read_as)] = (reason, c.description(), c.train_ids)

    mean = analysis.mean_recall()
    for label, f in sorted(analysis.labels.items()):
        if f.heldout_support and mean - f.heldout_recall > lc.low_recall_margin:
            candidates["edge_case.v1"][(label, "")] = mean - f.heldout_recall
            terms = analysis.misread_terms.get(label, ())
            weakness = f"held-out recall {f.heldout_recall:.0%} against a mean of {mean:.0%}" + (
                f"; misread examples talk about {', '.join(terms)}" if terms else "")
            details[("edge_case.v1", label, "")] = (f"held-out recall {f.heldout_recall:.2f}, mean over labels "
                                                    f"{mean:.2f}", weakness, analysis.misread.get(label, ()))
        if f.gold_train < lc.thin_label_size:
            candidates["paraphrase.v1"][(label, "")] = float(lc.thin_label_size - f.gold_train)
            details[("paraphrase.v1", label, "")] = (f"thin: {f.gold_train} gold-train records (fewer than "
                                                     f"{lc.thin_label_size})", "", ())

    red = set(cfg.policy.gold_only_labels)          # their training rows must be real: no drafts for them
    candidates = {k: {key: w for key, w in v.items() if key[0] not in red} for k, v in candidates.items()}
    shares = {"targeted.v1": lc.share_targeted, "edge_case.v1": lc.share_edge_case,
              "paraphrase.v1": lc.share_paraphrase}
    budget = allocate(lc.candidates_per_round, {k: v for k, v in shares.items() if candidates[k]})
    lines = []
    for strategy in ("targeted.v1", "edge_case.v1", "paraphrase.v1"):
        counts = allocate(budget.get(strategy, 0), candidates[strategy], lc.min_per_line)
        for (label, other), count in sorted(counts.items()):
            reason, weakness, seeds = details[(strategy, label, other)]
            lines.append(PlanLine(label, strategy, count, reason, weakness, tuple(seeds)))
    return Plan(round=analysis.round, lines=lines)


def plan_path(project_dir: Path, round: int) -> Path:
    return Path(project_dir) / PLAN_DIR / f"round-{round}.toml"


def write_plan(project_dir: Path, plan: Plan) -> Path:
    """Write ``plans/round-N.toml`` (atomically) and return its path."""
    path = plan_path(project_dir, plan.round)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(plan.to_toml(), encoding="utf-8")
    tmp.replace(path)
    return path


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def read_plan(path: Path, store: Store, round: int) -> Plan:
    """Read and check a plan file; every error names the file, the entry and the field."""
    name = f"{path.parent.name}/{path.name}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from exc
    if data.get("format") != FORMAT:
        raise ConfigError(f"{name}: format must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("round") != round:
        raise ConfigError(f"{name}: the plan is for round {data.get('round')!r}, not the open round {round}; "
                          f"run `goldloop plan --fresh` to plan round {round}")
    entries = data.get("line", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{name}: `line` must be an array of [[line]] tables")
    gold = store.records(origin="gold", split="train")
    gold_ids = {r.id: r.label for r in gold}
    labels = sorted(set(gold_ids.values()))
    heldout = set().union(*(_shingles(r.text) for r in store.records(origin="gold", split="heldout")))
    known = {"label", "strategy", "count", "reason", "weakness", "seeds"}
    lines = []
    for number, entry in enumerate(entries, start=1):
        where = f"{name}: [[line]] {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(sorted(known))}")
        label, strategy, count = entry.get("label"), entry.get("strategy"), entry.get("count")
        if label not in labels:
            raise ConfigError(f"{where}: label {label!r} is not a gold-train label; labels: {', '.join(labels)}")
        if strategy not in STRATEGIES:
            raise ConfigError(f"{where}: strategy {strategy!r} is unknown; known: {', '.join(sorted(STRATEGIES))}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"{where}: count must be a whole number of at least 0, got {count!r}")
        reason, weakness = entry.get("reason", ""), entry.get("weakness", "")
        if not isinstance(reason, str) or not isinstance(weakness, str):
            raise ConfigError(f"{where}: reason and weakness must be strings")
        if strategy == "targeted.v1" and not weakness.strip():
            raise ConfigError(f"{where}: targeted.v1 needs a weakness: describe in words where the model fails")
        if _shingles(weakness) & heldout:
            raise ConfigError(f"{where}: the weakness repeats {SHINGLE} or more words of a held-out record; "
                              "describe the weakness in your own words (held-out text never enters a prompt)")
        seeds = entry.get("seeds", [])
        if not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds):
            raise ConfigError(f"{where}: seeds must be a list of gold-train record ids")
        for seed in seeds:
            if gold_ids.get(seed) != label:
                raise ConfigError(f"{where}: seed {seed!r} is not a gold-train record of label {label!r}; "
                                  "seeds come from gold-train only (see `goldloop filter --explain ID`)")
        lines.append(PlanLine(label, strategy, count, reason, weakness, tuple(seeds)))
    return Plan(round=round, lines=lines, source="file")

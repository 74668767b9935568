"""Filters judge candidates; every judgement is a stored verdict with a reason."""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Config
from ..embed import CachedEmbedder
from ..errors import ConfigError
from ..records import Record, Verdict
from ..store import Store
from ._base import Filter, FilterContext
from ._consistency import LabelConsistency
from ._diversity import CollapseGuard
from ._judge import Judge
from ._dedup import Leakage, NearDuplicate, SemanticDuplicate
from ._pairs import PAIR_FILTERS, PairDuplicate, PairLeakage, PairLength, PairQuality, PairRepetition
from ._selection import SyntheticSelection
from ._rules import ExactDuplicate, LabelInSet, Language, Length, Patterns, Repetition, distinct_bigram_ratio

# Pipeline order: the funnel attributes each drop to the first filter here that made it.
FILTERS: dict[str, type[Filter]] = {f.name: f for f in (Length, Repetition, Patterns, LabelInSet, Language,
                                                        Leakage, ExactDuplicate, NearDuplicate, SemanticDuplicate,
                                                        LabelConsistency, Judge, SyntheticSelection, *PAIR_FILTERS)}
_VERSIONED = re.compile(r"^[a-z][a-z0-9_]*\.v[0-9]+$")


def register(cls: type[Filter]) -> type[Filter]:
    """Register a user filter under its versioned name, for [filter] extra.

    >>> from goldloop.filters import Filter, register
    >>> @register
    ... class NoShouting(Filter):
    ...     name = "no_shouting.v1"
    ...     reads = ("text",)
    ...     def judge(self, candidates, ctx):
    ...         return [self.verdict(c, not c.text.isupper(), None, "shouting" if c.text.isupper() else "calm", ctx)
    ...                 for c in candidates]
    >>> "no_shouting.v1" in FILTERS
    True
    """
    name = getattr(cls, "name", "")
    if not _VERSIONED.match(name):
        raise ConfigError(f"filter name {name!r} must be versioned, like 'my_rule.v1'")
    if not getattr(cls, "reads", None):
        raise ConfigError(f"filter {name} must declare what it reads (a `reads` tuple)")
    existing = FILTERS.get(name)
    if existing is not None and existing is not cls:
        raise ConfigError(f"a different filter is already registered as {name!r}; bump its version")
    FILTERS[name] = cls
    return cls


def _load_plugins(cfg: Config) -> None:
    for module in cfg.filter.plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"goldloop.toml: [filter] plugins names {module!r}, which cannot be imported: "
                              f"{exc}") from exc


def active_filters(cfg: Config) -> list[Filter]:
    """The filters a round runs, cheapest first; the collapse guard last, on what the rest kept.
    A `generate` project's drafts are pairs: each of the pair filters judges both sides."""
    _load_plugins(cfg)
    f = cfg.filter
    if cfg.project.task == "generate":
        patterns = bool(f.required_patterns or f.forbidden_patterns or cfg.generate.red_lines)
        off = {"pair_patterns.v1"} if not patterns else set()
        if not f.judge:
            off.add("pair_judge.v1")
        return [cls() for cls in PAIR_FILTERS if cls.name not in off]
    f = cfg.filter
    chosen: list[Filter] = [Length(), Repetition()]
    if f.required_patterns or f.forbidden_patterns or cfg.generate.red_lines:
        chosen.append(Patterns())
    chosen.append(LabelInSet())
    if f.language:
        chosen.append(Language())
    chosen += [Leakage(), ExactDuplicate(), NearDuplicate(), SemanticDuplicate()]
    if f.label_consistency != "off":
        chosen.append(LabelConsistency())
    if f.judge:
        chosen.append(Judge())
    for name in f.extra:
        if name not in FILTERS:
            raise ConfigError(f"goldloop.toml: [filter] extra names {name!r}, which is not registered; "
                              f"registered: {', '.join(sorted(FILTERS))} (load yours with [filter] plugins)")
        if name not in {x.name for x in chosen}:
            chosen.append(FILTERS[name]())
    if cfg.synthetic.selection:
        chosen.append(SyntheticSelection())
    chosen.append(CollapseGuard())
    return chosen


@dataclass
class FilterReport:
    round: int
    candidates: int = 0
    passed: int = 0
    flagged: int = 0
    # filter -> candidates it dropped first, in pipeline order, so the funnel adds up
    dropped_by: Counter[str] = field(default_factory=Counter)
    # filter -> every candidate it dropped, including those an earlier filter dropped too
    dropped_any: Counter[str] = field(default_factory=Counter)

    def funnel(self) -> list[tuple[str, int]]:
        order = [*FILTERS, CollapseGuard.name]
        names = set(self.dropped_by) | set(self.dropped_any)     # a filter whose drops all overlap shows 0
        steps = sorted(((name, self.dropped_by.get(name, 0)) for name in names),
                       key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
        return [("candidates", self.candidates), *steps, ("passed", self.passed)]


# The verdict a snapshot gives a draft no human reviewed when [review] unreviewed_may_train is
# false. It explains why the draft is out of that snapshot; it is no filter's judgement, so a
# draft accepted later is not "dropped" by it, and it stays in review queues.
REVIEW_GATE = "review_gate.v1"


def passing(verdicts: list[Verdict]) -> tuple[set[str], set[str], set[str]]:
    """(record ids a filter dropped, ids with any filter's verdict, ids flagged); the review gate's
    verdicts are not a filter's and are left out."""
    verdicts = [v for v in verdicts if v.filter != REVIEW_GATE]
    dropped = {v.record_id for v in verdicts if not v.keep}
    judged = {v.record_id for v in verdicts}
    flagged = {v.record_id for v in verdicts if v.flag}
    return dropped, judged, flagged


def round_marks(store: Store, round: int,
                record_ids: Sequence[str] | None = None) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """The round's drafts a filter dropped (id -> the filters that did, in the order stored) and the
    flags filters gave (id -> flags), read from the verdicts that drop or flag only: the same as
    :func:`passing` over every verdict of the round, without reading the passes, most of them.
    The review gate's verdicts are left out. ``record_ids``: of those drafts only (a page of them)."""
    dropped: dict[str, list[str]] = {}
    flags: dict[str, set[str]] = {}
    for record_id, name, keep, flag in store.verdict_marks(round, record_ids):
        if name == REVIEW_GATE:
            continue
        if not keep:
            dropped.setdefault(record_id, []).append(name)
        if flag:
            flags.setdefault(record_id, set()).add(flag)
    return dropped, flags


def run_filters(store: Store, cfg: Config, round: int, embedder: CachedEmbedder | None,
                filters: list[Filter] | None = None) -> FilterReport:
    """Judge every synthetic candidate of ``round`` with every active filter (or ``filters``);
    store the verdicts.

    Each filter sees all candidates (not only the survivors of earlier filters), so
    ``--explain`` shows every filter's view of a record. Re-running adds nothing new. With
    ``[executor] backend = "ray"`` the filters a batch of candidates can be judged by alone, and
    every dedup filter, run on Ray (:mod:`goldloop.filters._ray`) with the same verdicts.
    """
    chosen = active_filters(cfg) if filters is None else filters
    if cfg.executor.backend == "ray" and cfg.project.task != "generate":
        from ._ray import on_ray, run_on_ray

        n = store.count_records(origin="synthetic", round=round)
        counts = store.verdict_counts(round)
        todo = [f for f in chosen if counts.get(f.name, 0) < n]
        if any(on_ray(f) for f in todo):
            run_on_ray(store, cfg, round, embedder, [f for f in todo if on_ray(f)])
        chosen = [f for f in todo if not on_ray(f)]
        ctx = FilterContext(store=store, cfg=cfg, round=round, embedder=embedder)
        # filters that judge each candidate alone in this process (the LLM judge), while no
        # whole-round filter comes before them: a page of the round at a time, never all of it
        while chosen and chosen[0].pages:
            flt = chosen.pop(0)
            done = store.judged_ids(round, flt.name) if counts.get(flt.name) else set()
            for page in store.iter_records(origin="synthetic", round=round, page=20_000):
                fresh = [c for c in page if c.id not in done]
                if fresh:
                    store.add_verdicts(flt.judge(fresh, ctx))
        if not chosen:
            return summarize(store, round)
    candidates = store.records(origin="synthetic", round=round)
    ctx = FilterContext(store=store, cfg=cfg, round=round, embedder=embedder)
    counts = store.verdict_counts(round)
    for flt in chosen:
        # what a run stopped part-way left: read per filter, never every verdict of the round
        done = store.judged_ids(round, flt.name) if counts.get(flt.name) else set()
        todo_records = [c for c in candidates if c.id not in done]
        if todo_records:
            store.add_verdicts(flt.judge(todo_records, ctx))
    return summarize(store, round, candidates)


def summarize(store: Store, round: int, candidates: list[Record] | None = None) -> FilterReport:
    """The round's funnel, read from the verdicts that drop or flag a candidate (of ``candidates``
    only, when given): a round of millions is summed without loading its records or its passes."""
    marks = store.verdict_marks(round)
    if candidates is not None:
        ids = {c.id for c in candidates}
        marks = [m for m in marks if m[0] in ids]
    report = FilterReport(round=round, candidates=len(candidates) if candidates is not None
                          else store.count_records(origin="synthetic", round=round))
    order = {name: i for i, name in enumerate([*FILTERS, CollapseGuard.name])}
    first: dict[str, str] = {}
    dropped: set[str] = set()
    flagged: set[str] = set()
    for record_id, name, keep, flag in marks:
        if not keep:
            report.dropped_any[name] += 1
            current = first.get(record_id)
            if current is None or order.get(name, len(order)) < order.get(current, len(order)):
                first[record_id] = name
        if name != REVIEW_GATE:                 # the review gate's verdicts are not a filter's
            if not keep:
                dropped.add(record_id)
            if flag:
                flagged.add(record_id)
    report.dropped_by.update(first.values())
    report.passed = report.candidates - len(dropped)
    report.flagged = len(flagged - dropped)
    return report


__all__ = ["CollapseGuard", "ExactDuplicate", "FILTERS", "Filter", "FilterContext", "FilterReport", "Judge",
           "LabelConsistency", "LabelInSet", "Language", "Leakage", "Length", "NearDuplicate", "PAIR_FILTERS",
           "PairDuplicate", "PairLeakage", "PairLength", "PairQuality", "PairRepetition", "Patterns", "Repetition", "SemanticDuplicate", "SyntheticSelection",
           "REVIEW_GATE", "active_filters", "distinct_bigram_ratio", "passing", "register", "round_marks", "run_filters",
           "summarize"]

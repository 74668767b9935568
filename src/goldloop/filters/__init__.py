"""Filters judge candidates; every judgement is a stored verdict with a reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..config import Config
from ..embed import CachedEmbedder
from ..records import Record, Verdict
from ..store import Store
from ._base import Filter, FilterContext
from ._consistency import LabelConsistency
from ._diversity import CollapseGuard
from ._rules import ExactDuplicate, Leakage, Length, Repetition, distinct_bigram_ratio

FILTERS: dict[str, type[Filter]] = {f.name: f for f in (Length, Repetition, Leakage, ExactDuplicate,
                                                        LabelConsistency, CollapseGuard)}


def active_filters(cfg: Config) -> list[Filter]:
    """The filters a round runs, cheapest first."""
    chosen: list[Filter] = [Length(), Repetition(), Leakage(), ExactDuplicate()]
    if cfg.filter.label_consistency != "off":
        chosen.append(LabelConsistency())
    chosen.append(CollapseGuard())          # last: it judges what the others kept
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
        order = list(FILTERS)
        steps = sorted(self.dropped_by.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else
                                                                 len(order), kv[0]))
        return [("candidates", self.candidates), *steps, ("passed", self.passed)]


def passing(verdicts: list[Verdict]) -> tuple[set[str], set[str], set[str]]:
    """(record ids with a drop verdict, ids with any verdict, ids flagged)."""
    dropped = {v.record_id for v in verdicts if not v.keep}
    judged = {v.record_id for v in verdicts}
    flagged = {v.record_id for v in verdicts if v.flag}
    return dropped, judged, flagged


def run_filters(store: Store, cfg: Config, round: int, embedder: CachedEmbedder | None) -> FilterReport:
    """Judge every synthetic candidate of ``round`` with every active filter; store the verdicts.

    Each filter sees all candidates (not only the survivors of earlier filters), so
    ``--explain`` shows every filter's view of a record. Re-running adds nothing new.
    """
    candidates = store.records(origin="synthetic", round=round)
    ctx = FilterContext(store=store, cfg=cfg, round=round, embedder=embedder)
    done = {(v.record_id, v.filter) for v in store.verdicts(round=round)}
    for flt in active_filters(cfg):
        todo = [c for c in candidates if (c.id, flt.name) not in done]
        if todo:
            store.add_verdicts(flt.judge(todo, ctx))
    return summarize(store, round, candidates)


def summarize(store: Store, round: int, candidates: list[Record] | None = None) -> FilterReport:
    candidates = candidates if candidates is not None else store.records(origin="synthetic", round=round)
    ids = {c.id for c in candidates}
    verdicts = [v for v in store.verdicts(round=round) if v.record_id in ids]
    report = FilterReport(round=round, candidates=len(candidates))
    order = list(FILTERS)
    first: dict[str, str] = {}
    for v in verdicts:
        if not v.keep:
            report.dropped_any[v.filter] += 1
            rank = order.index(v.filter) if v.filter in order else len(order)
            current = first.get(v.record_id)
            if current is None or rank < (order.index(current) if current in order else len(order)):
                first[v.record_id] = v.filter
    report.dropped_by.update(first.values())
    dropped, _, flagged = passing(verdicts)
    report.passed = len(ids - dropped)
    report.flagged = len(flagged - dropped)
    return report


__all__ = ["CollapseGuard", "ExactDuplicate", "FILTERS", "Filter", "FilterContext", "FilterReport", "LabelConsistency",
           "Leakage", "Length", "Repetition", "active_filters", "distinct_bigram_ratio", "passing",
           "run_filters", "summarize"]

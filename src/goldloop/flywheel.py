"""The reviewer budget: how many decisions each source (LLM drafts, pool suggestions) gets in a
round, and how the split follows what each source's rows bought on held-out real data.

After a round, each source's lift is the held-out macro-F1 of the round's training set minus
that of the same set without the source's new rows; divided by the decisions spent on the
source, it says what a reviewer decision there was worth. The next round's shares move toward
the sources that paid (``[loop] budget_step`` of the way), judged on lifts and decisions summed over
the rounds so far (``[loop] budget_window``), and no source with candidates falls under
``[loop] min_source_share``, so its lift stays measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .filters import round_marks
from .records import SELF_TRAIN, Record
from .review import review_states, suggestions
from .store import Store

SOURCES = ("drafts", "pool")


def source_of(record: Record) -> str:
    """Which source a made row came from: real pool text ("pool") or an LLM draft or its edit ("drafts")."""
    if record.provenance.strategy == SELF_TRAIN:
        return "self_training"                     # no reviewer decisions: not a budget source
    return "pool" if record.origin == "pool" else "drafts"


def initial_shares(cfg: Config) -> dict[str, float]:
    return {"drafts": 1.0 - cfg.loop.pool_share, "pool": cfg.loop.pool_share}


def current_shares(store: Store, cfg: Config) -> dict[str, float]:
    """The shares for the next round: what the last finished loop round set, else ``[loop] pool_share``."""
    for info in reversed(store.rounds()):
        budget = info.metrics.get("loop", {}).get("budget")
        if budget and budget.get("next_shares"):
            return {k: float(v) for k, v in budget["next_shares"].items()}
    return initial_shares(cfg)


def split_budget(total: int, shares: Mapping[str, float], available: Mapping[str, int]) -> dict[str, int]:
    """Whole decisions per source; what a source cannot use (too few candidates) goes to the other.

    >>> split_budget(100, {"drafts": 0.3, "pool": 0.7}, {"drafts": 500, "pool": 40})
    {'drafts': 60, 'pool': 40}
    """
    want = {s: int(round(total * shares.get(s, 0.0))) for s in SOURCES}
    want["pool"] = total - want["drafts"]
    out = {s: min(want[s], available.get(s, 0)) for s in SOURCES}
    for s in SOURCES:
        spare = total - sum(out.values())
        if spare > 0:
            out[s] = min(available.get(s, 0), out[s] + spare)
    return out


def lift_per_100_so_far(store: Store, cfg: Config, number: int, lifts: Mapping[str, SourceLift]) -> dict[str, float | None]:
    """Each source's lift per 100 decisions over round ``number`` (``lifts``) and the budgeted rounds
    before it within ``[loop] budget_window`` (0: all): lifts and decisions summed, so the split
    follows what a source paid on more held-out evidence than one round's.

    A round's lift is measured on the same held-out records each time, so one round's figure swings
    with which few records its rows happened to flip; the sum over rounds is steadier."""
    window = [(number, {k: v.to_json() for k, v in lifts.items()})]
    for info in sorted(store.rounds(), key=lambda r: -r.number):
        sources = info.metrics.get("loop", {}).get("budget", {}).get("sources") if info.number < number else None
        if sources:
            window.append((info.number, sources))
    if cfg.loop.budget_window:
        window = window[:cfg.loop.budget_window]
    out: dict[str, float | None] = {}
    for source in SOURCES:
        measured = [s[source] for _, s in window if s.get(source, {}).get("lift") is not None
                    and s[source].get("decisions")]
        spent = sum(int(m["decisions"]) for m in measured)
        out[source] = 100.0 * sum(float(m["lift"]) for m in measured) / spent if spent else None
    return out


def next_shares(shares: Mapping[str, float], lift_per_100: Mapping[str, float | None], cfg: Config,
                active: Sequence[str] = SOURCES) -> dict[str, float]:
    """Move the shares toward each source's positive lift per decision, within the bounds.

    >>> from goldloop.config import Config
    >>> next_shares({"drafts": 0.5, "pool": 0.5}, {"drafts": 0.5, "pool": 2.0}, Config())
    {'drafts': 0.2, 'pool': 0.8}
    >>> next_shares({"drafts": 0.5, "pool": 0.5}, {"drafts": 0.0, "pool": 2.0}, Config())
    {'drafts': 0.1, 'pool': 0.9}
    """
    gains = {s: max(float(lift_per_100.get(s) or 0.0), 0.0) for s in SOURCES}
    if sum(gains.values()) <= 0:
        return {s: round(float(shares.get(s, 0.0)), 4) for s in SOURCES}
    target = {s: gains[s] / sum(gains.values()) for s in SOURCES}
    step = cfg.loop.budget_step
    moved = {s: (1 - step) * float(shares.get(s, 0.0)) + step * target[s] for s in SOURCES}
    floor = cfg.loop.min_source_share
    for s in SOURCES:
        if s in active and moved[s] < floor:
            other = next(o for o in SOURCES if o != s)
            moved[other] -= floor - moved[s]
            moved[s] = floor
    return {s: round(v, 4) for s, v in moved.items()}


def pending_drafts(store: Store, round: int, f1: Mapping[str, float] | None = None) -> list[Record]:
    """The round's drafts that passed every filter and await a decision, in the order a budget spends
    them: labels taken in turn (weakest held-out F1 first), within a label the selection filter's
    highest weight first."""
    dropped = set(round_marks(store, round)[0])
    score = {v.record_id: float(v.score) for v in store.verdicts(round=round, filter="synthetic_selection.v1")
             if v.score is not None}
    states = review_states(store.decisions(round=round))
    todo = [r for r in store.records(origin="synthetic", round=round)
            if r.id not in dropped and (r.id not in states or states[r.id].action == "none")]
    by_label: dict[str, list[Record]] = {}
    for rec in sorted(todo, key=lambda r: (-score.get(r.id, 0.0), r.id)):
        by_label.setdefault(rec.label, []).append(rec)
    f1 = f1 or {}
    labels = sorted(by_label, key=lambda lab: (f1.get(lab, 1.0), lab))
    out: list[Record] = []
    while any(by_label.values()):
        for lab in labels:
            if by_label[lab]:
                out.append(by_label[lab].pop(0))
    return out


def pending_suggestions(store: Store, round: int) -> list[Record]:
    """The round's suggestions that await a decision, in the order they were picked (typical first)."""
    states = review_states(store.decisions(round=round))
    made = [r for r in suggestions(store, round) if r.id not in states or states[r.id].action == "none"]
    return sorted(made, key=lambda r: (r.provenance.params.get("picked_as") != "typical", r.id))


def decisions_by_source(store: Store, round: int) -> dict[str, int]:
    """Decisions (accept, reject, edit) spent in ``round`` on each source; simulated ones included."""
    states = review_states(store.decisions(round=round))
    out = dict.fromkeys(SOURCES, 0)
    if not states:
        return out
    origin = {r.id: r for r in store.records(ids=sorted(states))}
    for rid, state in states.items():
        if state.action in ("accept", "reject", "edit") and rid in origin:
            out[source_of(origin[rid])] += 1
    return out


@dataclass
class SourceLift:
    """One source's part in a round: rows added, decisions spent, and its held-out lift."""

    source: str
    rows: int
    decisions: int
    macro_f1_without: float | None
    lift: float | None
    pred_without: list[str] | None = field(default=None, repr=False)   # held-out predictions without it

    @property
    def lift_per_100(self) -> float | None:
        if self.lift is None or not self.decisions:
            return None
        return 100.0 * self.lift / self.decisions

    def to_json(self) -> dict[str, Any]:
        per = self.lift_per_100
        return {"source": self.source, "rows": self.rows, "decisions": self.decisions,
                "macro_f1_without": None if self.macro_f1_without is None else round(self.macro_f1_without, 4),
                "lift": None if self.lift is None else round(self.lift, 4),
                "lift_per_100_decisions": None if per is None else round(per, 4)}


def drafts_per_real_row(lifts: Mapping[str, SourceLift]) -> float | None:
    """How many accepted drafts were worth one real pool row this round (None: not measurable)."""
    d, p = lifts.get("drafts"), lifts.get("pool")
    if not d or not p or not d.rows or not p.rows or not d.lift or not p.lift or d.lift <= 0 or p.lift <= 0:
        return None
    return round((p.lift / p.rows) / (d.lift / d.rows), 2)


def analysis_focus(store: Store, number: int) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Per-label held-out F1 and confused label pairs from the analysis behind round ``number``'s plan."""
    made = [p for _, _, p in store.events("loop.plan.made") if p.get("round") == number]
    if not made:
        return {}, []
    analysis = made[-1].get("analysis", {})
    f1 = {k: float(v.get("heldout_f1", 1.0)) for k, v in analysis.get("labels", {}).items()}
    confused = [(c["label"], c["read_as"]) for c in analysis.get("confusions", [])[:20]]
    return f1, confused


def spend_budget(store: Store, cfg: Config, number: int, embedder: Any, training: Sequence[Record],
                 weights: Mapping[str, float] | None, model_name: str,
                 reviewers: Mapping[str, Any] | None = None, review: Any = None,
                 say: Any = lambda _: None) -> dict[str, Any]:
    """Split the round's reviewer budget, have the pool's share of records suggested, and let the
    reviewers (simulated ones decide here; a human ``review`` callback sees the whole queue)
    spend it. Decisions already made in this round count against it, so a rerun spends no more."""
    from .simulate import apply_simulated
    from .suggest import answered_pool_ids, suggest

    total = cfg.loop.review_budget
    shares = current_shares(store, cfg)
    f1, confused = analysis_focus(store, number)
    drafts = pending_drafts(store, number, f1)
    spent = decisions_by_source(store, number)
    pool = store.records(origin="pool", split="pool")
    used, unusable = answered_pool_ids(store)
    open_pool = sum(1 for r in pool if r.id not in used and r.id not in unusable)
    split = split_budget(total, shares, {"drafts": len(drafts) + spent["drafts"], "pool": open_pool})
    say(f"round {number}: reviewer budget {total}: {split['drafts']} for drafts, {split['pool']} for pool "
        f"suggestions (shares {shares['drafts']:.2f} / {shares['pool']:.2f})")
    report = suggest(store, cfg, number, split["pool"], embedder, training, weights=weights, f1=f1,
                     confused=confused, model_name=model_name)
    done: dict[str, dict[str, int]] = {}
    if reviewers:
        if reviewers.get("drafts") is not None:
            left = max(0, split["drafts"] - spent["drafts"])
            done["drafts"] = apply_simulated(store, cfg, number, reviewers["drafts"], drafts[:left])
        if reviewers.get("pool") is not None:
            left = max(0, split["pool"] - spent["pool"])
            done["pool"] = apply_simulated(store, cfg, number, reviewers["pool"],
                                           pending_suggestions(store, number)[:left])
    if review is not None:
        review(number)
    return {"total": total, "shares": shares, "split": split, "suggest": report.to_json(), "simulated": done,
            "simulated_reviewers": [r.to_json() for r in (reviewers or {}).values() if r is not None]}


def measure_sources(cfg: Config, embedder: Any, training: Sequence[Record], new_ids: set[str],
                    weights: Mapping[str, float] | None, texts: Sequence[str], y_true: Sequence[str],
                    labels: Sequence[str], full_f1: float, spent: Mapping[str, int]) -> dict[str, SourceLift]:
    """Each source's lift on held-out: macro-F1 with the round's training set minus without the
    source's new rows (a source that added nothing has no lift)."""
    from .analysis import train_and_predict
    from .evaluate import scores

    out: dict[str, SourceLift] = {}
    for source in SOURCES:
        mine = {r.id for r in training if r.id in new_ids and source_of(r) == source}
        if not mine:
            out[source] = SourceLift(source, 0, spent.get(source, 0), None, None)
            continue
        rest = [r for r in training if r.id not in mine]
        pred = train_and_predict(cfg, embedder, rest, texts, weights)
        without = scores(list(y_true), pred, list(labels))["macro_f1"]
        out[source] = SourceLift(source, len(mine), spent.get(source, 0), without, full_f1 - without, list(pred))
    return out


def without_rows(store: Store, cfg: Config, snap: Any, drop: set[str], why: str) -> Any:
    """``snap`` less the rows in ``drop``, stored as its own snapshot (policy-checked), each dropped
    row with a ``source_lift.v1`` verdict saying why."""
    from .records import Verdict
    from .snapshot import derived_snapshot

    records = [r for r in store.records(ids=snap.record_ids) if r.id not in drop]
    m = snap.manifest
    manifest = {k: m[k] for k in ("policy", "carried", "round_snapshot", "simulated_reviewers") if k in m}
    manifest["weights"] = {k: v for k, v in (m.get("weights") or {}).items() if k not in drop}
    manifest["dropped_by_source_lift"] = len(drop)
    verdicts = [Verdict(rid, "source_lift.v1", False, None, why, snap.round) for rid in sorted(drop)]
    return derived_snapshot(store, cfg, snap, records, f"{snap.name}-without-drafts", manifest, verdicts)

"""Snapshots: immutable, content-addressed training sets with a manifest.

A round's snapshot holds every gold-train record plus the round's synthetic candidates that
passed every filter and the review gate, and the records reviewers edited. Every candidate
left out has a verdict or a decision saying why; those left out by the review gate get a
``review_gate.v1`` verdict here, so nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .config import Config
from .errors import StageError
from .filters import passing
from .records import Record, Snapshot, Verdict, content_hash, now
from .review import review_states
from .store import Store

GATE = "review_gate.v1"


def build_snapshot(store: Store, cfg: Config, number: int) -> Snapshot:
    """Select, check and store the round's training set; the same inputs give the same id."""
    gold = store.records(origin="gold", split="train")
    if not gold:
        raise StageError("refusing to build a snapshot without gold-train records: training on "
                         "synthetic data alone is not allowed")
    candidates = store.records(origin="synthetic", round=number)
    dropped, _, _ = passing(store.verdicts(round=number))
    states = review_states(store.decisions(round=number))
    chosen: list[Record] = list(gold)
    excluded: Counter[str] = Counter()
    gate_verdicts: list[Verdict] = []
    edited_ids: list[str] = []
    for rec in candidates:
        state = states.get(rec.id)
        action = state.action if state else "none"
        if rec.id in dropped:
            excluded["dropped by a filter"] += 1
        elif action == "reject":
            excluded["rejected by a reviewer"] += 1
        elif action == "edit":
            excluded["replaced by a reviewer's edit"] += 1
            if state and state.new_record_id:
                edited_ids.append(state.new_record_id)
        elif action == "accept" or cfg.review.unreviewed_may_train:
            chosen.append(rec)
        else:
            excluded["not reviewed (review.unreviewed_may_train = false)"] += 1
            gate_verdicts.append(Verdict(rec.id, GATE, False, None, "not reviewed by a human, and "
                                         "[review] unreviewed_may_train is false", number))
    chosen += store.records(ids=edited_ids)
    if any(r.split == "heldout" for r in chosen):
        raise StageError("a held-out record reached the snapshot; refusing to continue")
    store.add_verdicts(gate_verdicts)

    ids = sorted(r.id for r in chosen)
    reviewers = Counter(s.reviewer for s in states.values() if s.action != "none")
    manifest: dict[str, Any] = {
        "format": "goldloop.snapshot.v1",
        "round": number,
        "records": len(chosen),
        "by_origin": dict(Counter(r.origin for r in chosen)),
        "by_strategy": dict(Counter(r.provenance.strategy for r in chosen if r.origin != "gold")),
        "by_label": dict(sorted(Counter(r.label for r in chosen).items())),
        "by_reviewer": dict(reviewers),
        "synthetic_share": round(sum(r.origin != "gold" for r in chosen) / len(chosen), 4),
        "candidates": len(candidates),
        "excluded": dict(excluded),
        "policy": {"unreviewed_may_train": cfg.review.unreviewed_may_train, "heldout_isolated": True},
    }
    snap = Snapshot(id=content_hash("snapshot", ids)[:16], name=f"round-{number}", round=number,
                    record_ids=tuple(ids), manifest=manifest, created_at=now())
    existing = store.get_snapshot(snap.id)
    if existing is not None:
        return existing
    store.add_snapshot(snap)
    store.log_event("snapshot", {"id": snap.id, "round": number, "records": len(ids)})
    return snap

"""Snapshots: immutable, content-addressed training sets with a manifest.

A round's snapshot holds every gold-train record plus the round's synthetic candidates that
passed every filter and the review gate, the records reviewers edited, and the pool records
whose suggested label a reviewer confirmed or corrected (real rows; an unanswered suggestion
never trains). Every candidate
left out has a verdict or a decision saying why; those left out by the review gate get a
``review_gate.v1`` verdict here, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from .config import Config
from ._policy_tally import RowTally
from ._snapshot_manifest import ManifestTally, describe
from .errors import StageError
from .filters import REVIEW_GATE, round_marks
from .governance import enforce
from .records import SELF_TRAIN, Record, Snapshot, Verdict, content_hash, now
from .review import review_states, suggestions
from .store import Store
from .suites import suite_copies

GATE = REVIEW_GATE
SELECTION = "synthetic_selection.v1"


def build_snapshot(store: Store, cfg: Config, number: int, embedder: Any = None, reviewed_only: bool = False) -> Snapshot:
    """Select, check and store the round's training set; the same inputs give the same id.

    The ``[policy]`` rules are checked before anything is stored (a failure raises
    :class:`goldloop.governance.PolicyError` naming the rule and its numbers). With an
    ``embedder``, the manifest's diversity summary also has embedding-space figures.
    ``reviewed_only``: drafts train only when a reviewer accepted or edited them (a round that
    spends a reviewer budget), whatever ``[review] unreviewed_may_train`` says.

    The round's drafts are read a page at a time and only ids and counts are kept of those that
    train (:class:`_Chosen`), so a round of millions of drafts is never held at once.
    """
    gold = store.records(origin="gold", split="train")
    if not gold:
        raise StageError("refusing to build a snapshot without gold-train records: training on "
                         "synthetic data alone is not allowed")
    n_candidates = 0
    suggested = suggestions(store, number)
    chosen = _Chosen(store, cfg, number)
    chosen.offer(gold)
    excluded: Counter[str] = Counter()
    gate = _GateSpool()                              # (record id, why): the review gate's verdicts
    edited_ids: list[str] = []
    budget_reason = ("not reviewed, and the round spends a reviewer budget ([loop] review_budget): only reviewed "
                     "drafts train")
    human_reason = "not reviewed by a human, and [review] unreviewed_may_train is false"
    for page in store.iter_records(origin="synthetic", round=number, page=PAGE):
        taken = []
        ids = [r.id for r in page]              # the page's filter drops and review states, not the round's
        dropped = set(round_marks(store, number, ids)[0])
        states = review_states(store.decisions(round=number, record_ids=ids))
        for rec in page:
            n_candidates += 1
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
            elif action == "accept" or (cfg.review.unreviewed_may_train and not reviewed_only):
                taken.append(rec)
            elif reviewed_only:
                excluded["not reviewed (the round spends a reviewer budget)"] += 1
                gate.append((rec.id, budget_reason))
            else:
                excluded["not reviewed (review.unreviewed_may_train = false)"] += 1
                gate.append((rec.id, human_reason))
        chosen.offer(taken)
    taken = []
    states = review_states(store.decisions(round=number, record_ids=[r.id for r in suggested]))
    for rec in suggested:
        state = states.get(rec.id)
        action = state.action if state else "none"
        if action == "accept":
            taken.append(rec)
        elif action == "edit" and state and state.new_record_id:
            edited_ids.append(state.new_record_id)
        elif action == "reject":
            excluded["pool record rejected by a reviewer (unusable)"] += 1
        else:
            excluded["suggested label not answered by a reviewer"] += 1
            gate.append((rec.id, "a suggested label trains only once a reviewer confirms or corrects it"))
    chosen.offer(taken)
    for start in range(0, len(edited_ids), PAGE):
        chosen.offer(store.records(ids=edited_ids[start:start + PAGE]))
    machine = chosen.screen(self_training_of_round(store, cfg, number))
    if chosen.copies:
        excluded[SUITE_TEXT] += chosen.copies
    if chosen.refused:
        excluded[GOLD_ONLY] += chosen.refused
    room = synthetic_room(chosen.manifest.records, chosen.manifest.made, len(machine), cfg.policy.max_synthetic_share)
    machine, over = within_synthetic_share([], machine, cfg.policy.max_synthetic_share, cfg.suggest.self_training_keep,
                                           room=room)
    if over:
        excluded[OVER_SHARE] += over
    chosen.offer(machine, screened=True)
    chosen.flush()

    ids = sorted(chosen.ids)
    reviewers, simulated = reviewer_tally(store, number)
    manifest = chosen.manifest.describe(number, n_candidates + len(suggested), excluded, dict(reviewers), embedder)
    manifest["simulated_reviewers"] = sorted(simulated)
    manifest["weights"] = dict(sorted({**chosen.weights, **{r.id: cfg.suggest.self_training_weight for r in machine}}.items()))
    if machine:
        manifest["self_trained"] = len(machine)
    manifest["policy"] = {"unreviewed_may_train": cfg.review.unreviewed_may_train and not reviewed_only,
                          "heldout_isolated": True}
    snap = Snapshot(id=content_hash("snapshot", ids)[:16], name=f"round-{number}", round=number,
                    record_ids=tuple(ids), manifest=manifest, created_at=now())
    return store_snapshot(store, cfg, snap, tally=chosen.tally,
                          verdicts=(Verdict(rid, GATE, False, None, why, number) for rid, why in gate.read()))


#: Records a snapshot reads, checks and describes at once.
PAGE = 5000


class _GateSpool:
    """The review gate's (record id, why) pairs of a round, kept in a temporary file once there are
    more than a page of them: a round of millions of unreviewed drafts is not held in memory until
    the snapshot's transaction writes their verdicts."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=PAGE * 64, mode="w+", encoding="utf-8")
        self._reasons: dict[str, int] = {}

    def append(self, item: tuple[str, str]) -> None:
        record_id, why = item
        self._file.write(json.dumps([record_id, self._reasons.setdefault(why, len(self._reasons))]) + "\n")

    def read(self) -> Iterator[tuple[str, str]]:
        """Every pair appended, in order; the file is closed once the last is read."""
        whys = list(self._reasons)
        self._file.seek(0)
        for line in self._file:
            record_id, why = json.loads(line)
            yield record_id, whys[why]
        self._file.close()


class _Chosen:
    """The rows a snapshot takes, offered a page at a time: the suite and gold-only screens are
    applied, and only their ids, the manifest's counts (:class:`ManifestTally`), the policy rules'
    counts (:class:`goldloop.governance.RowTally`) and their selection weights are kept."""

    def __init__(self, store: Store, cfg: Config, number: int) -> None:
        self.cases = set(store.suite_text_hashes())
        self.cfg = cfg
        self.ids: list[str] = []
        self.copies = self.refused = 0
        self.tally = RowTally(store, cfg)
        self.manifest = ManifestTally(seed=cfg.project.seed)
        self.given = {v.record_id: float(v.score) for v in store.verdicts(round=number, filter=SELECTION)
                      if v.keep and v.score is not None}
        self.weights: dict[str, float] = {}
        self._page: list[Record] = []

    def screen(self, rows: list[Record]) -> list[Record]:
        """``rows`` less those that repeat a suite case's text or are made rows of a gold-only label (counted)."""
        copies = {r.id for r in suite_copies(rows, self.cases)}
        self.copies += len(copies)
        kept, refused = without_gold_only([r for r in rows if r.id not in copies], self.cfg)
        self.refused += refused
        return kept

    def offer(self, rows: list[Record], screened: bool = False) -> None:
        for r in rows if screened else self.screen(rows):
            if r.split == "heldout":
                raise StageError("a held-out record reached the snapshot; refusing to continue")
            self.ids.append(r.id)
            self.manifest.add(r)
            if not r.real:
                rid = r.id if r.id in self.given else next((p for p in r.provenance.parents if p in self.given), None)
                if rid is not None:
                    self.weights[r.id] = round(self.given[rid], 6)
            self._page.append(r)
            if len(self._page) >= PAGE:
                self.flush()

    def flush(self) -> None:
        if self._page:
            self.tally.add(self._page)
            self._page = []


#: Why a row was left out of a training set because a stress-test suite holds its text.
SUITE_TEXT = "text of a stress-test suite case (suites are scored on, never trained on)"


#: Why a row of a gold-only label was left out of a training set.
GOLD_ONLY = "synthetic, edited or machine-labelled row of a [policy] gold_only_labels label"


def without_gold_only(rows: list[Record], cfg: Config) -> tuple[list[Record], int]:
    """``rows`` less the synthetic, edited and machine-labelled ones of a ``[policy]
    gold_only_labels`` label (whose training rows must be real), and how many those were."""
    red = set(cfg.policy.gold_only_labels)
    if not red:
        return rows, 0
    kept = [r for r in rows if r.real or r.label not in red]
    return kept, len(rows) - len(kept)


#: Why a self-training row was left out of a training set.
OVER_SHARE = "self-training row over [policy] max_synthetic_share (kept: [suggest] self_training_keep)"


def reviewer_tally(store: Store, number: int) -> tuple[Counter[str], set[str]]:
    """Per reviewer, the records of round ``number`` whose standing decision is theirs, and the
    simulated reviewers among them; read a page of decided records at a time."""
    reviewers: Counter[str] = Counter()
    simulated: set[str] = set()
    for ids in store.iter_decided_ids(round=number):
        for state in review_states(store.decisions(round=number, record_ids=ids)).values():
            if state.action != "none":
                reviewers[state.reviewer] += 1
                if state.simulated:
                    simulated.add(state.reviewer)
    return reviewers, simulated


def self_training_of_round(store: Store, cfg: Config, number: int) -> list[Record]:
    """The self-training rows round ``number`` made whose pool record no reviewer answered in it."""
    if not cfg.suggest.self_training:
        return []
    suggested = suggestions(store, number)
    states = review_states(store.decisions(round=number, record_ids=[r.id for r in suggested]))
    answered = {r.provenance.parents[0] for r in suggested
                if states.get(r.id) is not None and states[r.id].action != "none"}
    return [r for r in store.records(origin="pool", round=number)
            if r.provenance.strategy == SELF_TRAIN and r.provenance.parents[0] not in answered]


def synthetic_room(total: int, made: int, offered: int, limit: float) -> int:
    """How many more made rows a training set of ``total`` rows, ``made`` of them made, takes while
    it stays within ``limit`` synthetic (all ``offered`` when the limit is 1)."""
    if limit >= 1.0:
        return offered
    return max(0, int((limit * total - made) / (1.0 - limit) + 1e-9))


def within_synthetic_share(rows: list[Record], machine: list[Record], limit: float,
                           keep: str = "least_confident", room: int | None = None) -> tuple[list[Record], int]:
    """The self-training rows of ``machine`` that ``rows`` can take while the training set stays
    within ``limit`` synthetic (``[policy] max_synthetic_share``), and how many were left out. They
    are optional extras: the policy trims them instead of refusing the set. ``keep``
    (``[suggest] self_training_keep``) says which stay: the least confident (nearest the threshold:
    the model already gets the most confident right, so they teach it least) or the most confident.

    >>> from goldloop.records import Record
    >>> gold = [Record.gold(f"t{i}", "a") for i in range(2)]
    >>> machine = [Record.self_trained(Record.gold(f"p{i}", "a"), "a", "m", {"confidence": i / 10}, 1) for i in range(9)]
    >>> kept, over = within_synthetic_share(gold, machine, 0.8)
    >>> len(kept), over, max(r.provenance.params["confidence"] for r in kept)
    (8, 1, 0.7)
    >>> kept, over = within_synthetic_share(gold, machine, 0.8, keep="most_confident")
    >>> min(r.provenance.params["confidence"] for r in kept)
    0.1
    """
    if limit >= 1.0 or not machine:
        return machine, 0
    if room is None:                                # ``room``: computed by the caller from its counts
        room = synthetic_room(len(rows), sum(not r.real for r in rows), len(machine), limit)
    if len(machine) <= room:
        return machine, 0
    sign = 1.0 if keep == "least_confident" else -1.0
    ranked = sorted(machine, key=lambda r: (sign * float(r.provenance.params.get("confidence", 0.0)), r.id))
    return ranked[:room], len(machine) - room


def store_snapshot(store: Store, cfg: Config, snap: Snapshot, records: list[Record] | None = None,
                   verdicts: Iterable[Verdict] = (), tally: RowTally | None = None) -> Snapshot:
    """Check the policy rules for a new snapshot, then store it (with the gate's verdicts) at once.

    The rules read ``records``, or the counts of ``tally`` that the caller summed over them. The
    verdicts are written in batches within the snapshot's transaction. An existing snapshot with
    the same id (the same records) is returned as it is.
    """
    existing = store.get_snapshot(snap.id)
    if existing is not None:
        return existing
    results = enforce(store, cfg, snap, "snapshot", records, tally=tally)
    snap.manifest["policy_results"] = [r.to_json() for r in results]
    snap.manifest["use_case"] = cfg.policy.use_case or cfg.project.name
    with store.transaction():
        batch: list[Verdict] = []
        for verdict in verdicts:
            batch.append(verdict)
            if len(batch) >= 10 * PAGE:
                store.add_verdicts(batch)
                batch = []
        store.add_verdicts(batch)
        store.add_snapshot(snap)
        store.log_event("snapshot", {"id": snap.id, "round": snap.round, "records": len(snap.record_ids)})
    return snap


def derived_snapshot(store: Store, cfg: Config, base: Snapshot, records: list[Record], name: str,
                     manifest: dict[str, Any], verdicts: list[Verdict] = ()) -> Snapshot:
    """A snapshot of ``records`` made from ``base`` (the loop's merged or trimmed training sets): its
    manifest described afresh, with ``base``'s candidates, exclusions and reviewers and the entries
    of ``manifest``; content-addressed and policy-checked like any other."""
    ids = sorted(r.id for r in records)
    m = base.manifest
    out = describe(records, base.round, m.get("candidates", 0), m.get("excluded", {}), m.get("by_reviewer", {}))
    out.update(manifest)
    snap = Snapshot(id=content_hash("snapshot", ids)[:16], name=name, round=base.round, record_ids=tuple(ids),
                    manifest=out, created_at=now())
    return store_snapshot(store, cfg, snap, records, verdicts)


def resolve_snapshot(store: Store, ref: str) -> Snapshot:
    """The snapshot named by ``ref``: an id, a unique id prefix, a name (the newest of that name), or ``latest``.

    Only the snapshot found is loaded with its record ids, not every snapshot of the project.
    """
    ids = store.snapshot_ids_with_prefix("")            # oldest first
    if not ids:
        raise StageError("the project has no snapshot yet; run `goldloop snapshot` first")
    ref = ref.strip()
    if ref == "latest":
        ref = ids[-1]
    found = store.get_snapshot(ref) if ref else None    # an id, or the newest of a name
    if found is not None:
        return found
    prefixed = store.snapshot_ids_with_prefix(ref) if ref else []
    if len(prefixed) == 1:
        snap = store.get_snapshot(prefixed[0])
        assert snap is not None
        return snap
    if len(prefixed) > 1:
        raise StageError(f"{len(prefixed)} snapshots start with {ref!r} ({', '.join(prefixed[:5])}); "
                         "give more of the id")
    newest = [s for s in (store.get_snapshot(i) for i in ids[-5:]) if s is not None]
    known = ", ".join(f"{s.id} ({s.name})" for s in newest)
    raise StageError(f"no snapshot {ref!r}; give an id, a unique id prefix, a name or `latest` (newest: {known})")

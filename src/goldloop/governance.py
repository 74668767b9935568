"""Synthetic-data policy as code: rules checked at snapshot, evaluation, export and training time.

Each rule of ``[policy]`` gives a :class:`PolicyResult` naming the rule and the numbers behind
it. :func:`enforce` raises :class:`PolicyError` for every failed rule that no approver has
overridden for that snapshot and stage; an override (``goldloop snapshot override``) needs an
approver and a reason and is written to the audit log.

Rules:

- ``heldout_isolation``: no held-out record, no row drafted from a held-out seed, and no row
  whose text (for a prompt → response pair: either side) equals a held-out text (either side).
  Always on; it cannot be overridden.
- ``suite_isolation``: no made row repeats the text of a stress-test suite case
  (:mod:`goldloop.suites`): a suite trained on measures nothing. Always on; it cannot be
  overridden.
- ``no_synthetic_only``: the training set contains real gold rows. Always on; it cannot be
  overridden.
- ``min_gold_per_label``: every label has at least this many gold rows.
- ``max_synthetic_share``: synthetic and edited rows are at most this share of the rows.
- ``human_review``: synthetic rows were accepted by a reviewer (``all``), or at least a sampled
  share of them was (``sampled``); rows a reviewer edited count as reviewed.
- ``gold_only_labels``: no synthetic, edited or machine-labelled row has one of these labels
  (e.g. red-line decisions, whose training rows must be real).
- ``max_source_class_share``: each source class (:mod:`goldloop.sources`: llm, simulator,
  external) is at most its ``[policy] max_<class>_share`` of the rows.
- ``external_license``: every row from a public source was ingested with a licence (when
  ``[policy] external_license_required``).
- ``signoff``: an approver signed the snapshot off for this use case (checked at export and by
  ``goldloop train``, which make models or data for use; a round's held-out evaluation, which
  only judges the round, does not need it, and a snapshot must exist before it can be signed).

:func:`check_training_policy` applies the rules to an export folder about to be trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, Config
from .errors import GoldloopError
from ._policy_tally import PolicyResult, RowTally
from .records import Record, Snapshot
from .review import review_states
from .sources import source_class
from .store import Store

STAGES = ("snapshot", "evaluate", "export", "train")
CAPPED_CLASSES = ("llm", "simulator", "external")
UNOVERRIDABLE = ("heldout_isolation", "suite_isolation", "no_synthetic_only")
RULES = ("heldout_isolation", "suite_isolation", "no_synthetic_only", "min_gold_per_label", "max_synthetic_share", "gold_only_labels",
         "max_source_class_share", "external_license", "human_review", "signoff")


class PolicyError(GoldloopError):
    """A snapshot breaks one or more policy rules at some stage."""

    def __init__(self, message: str, failures: list["PolicyResult"]) -> None:
        super().__init__(message)
        self.failures = failures


def use_case(cfg: Config) -> str:
    return cfg.policy.use_case or cfg.project.name


#: Training-set rows a policy check reads at once when it reads a stored snapshot itself.
PAGE = 5000


def check(store: Store, cfg: Config, snapshot: Snapshot, stage: str,
          records: list[Record] | None = None, tally: RowTally | None = None) -> list[PolicyResult]:
    """Every rule that applies at ``stage``, passed or not, with overrides applied.

    ``records`` are the snapshot's rows when the caller holds them, and ``tally`` their counts
    when the caller summed them as it went (a snapshot being built); otherwise the rows are read
    from the store :data:`PAGE` at a time and only the rules' counts are kept.
    """
    if stage not in STAGES:
        raise ValueError(f"stage is one of {', '.join(STAGES)}, not {stage!r}")
    pol = cfg.policy
    if tally is None and records is not None:
        tally = RowTally(store, cfg)
        tally.add(records)
    elif tally is None:
        tally = RowTally(store, cfg)
        ids = snapshot.record_ids
        for start in range(0, len(ids), PAGE):
            tally.add(store.records(ids=ids[start:start + PAGE]))
    total = tally.total
    results: list[PolicyResult] = [tally.isolation(), tally.suite_isolation()]

    results.append(PolicyResult(
        "no_synthetic_only", bool(tally.gold),
        f"the training set has {tally.gold} real gold rows" if tally.gold else
        f"the training set has no real gold rows ({total} rows, all synthetic or edited): training on "
        "synthetic data alone is not allowed", {"gold": tally.gold, "rows": total}))

    labels = cfg.project.labels or store.labels()
    per_label = tally.gold_per_label
    thin = {label: per_label.get(label, 0) for label in labels if per_label.get(label, 0) < pol.min_gold_per_label}
    results.append(PolicyResult(
        "min_gold_per_label", not thin,
        (f"every label has at least {pol.min_gold_per_label} gold rows" if not thin else
         f"{len(thin)} label(s) have fewer than {pol.min_gold_per_label} gold rows: "
         + ", ".join(f"{k} has {v}" for k, v in sorted(thin.items()))
         + ". Ingest more gold examples for them."),
        {"minimum": pol.min_gold_per_label, "short": thin}))

    made = tally.made
    share = made / total if total else 0.0
    results.append(PolicyResult(
        "max_synthetic_share", share <= pol.max_synthetic_share + 1e-12,
        f"the training set is {share:.1%} synthetic ({made} of {total} rows); the limit is "
        f"{pol.max_synthetic_share:.0%}" + ("" if share <= pol.max_synthetic_share + 1e-12 else
                                           ". Add gold data or keep fewer synthetic rows."),
        {"synthetic": made, "rows": total, "share": round(share, 4), "limit": pol.max_synthetic_share}))

    if pol.gold_only_labels:
        results.append(tally.gold_only_labels(labels))
    caps = {c: getattr(pol, f"max_{c}_share") for c in CAPPED_CLASSES}
    if any(cap < 1.0 for cap in caps.values()):
        results.append(tally.class_shares(caps))
    if pol.external_license_required:
        results.append(tally.licences())

    if pol.review_required != "none":
        results.append(tally.review(pol.review_required, pol.review_sample_rate))

    if stage in ("export", "train") and pol.signoff_required:
        signed = [s for s in store.signoffs(snapshot.id) if s["use_case"] == use_case(cfg)]
        results.append(PolicyResult(
            "signoff", bool(signed),
            (f"signed off for {use_case(cfg)!r} by {', '.join(s['approver'] for s in signed)}" if signed else
             f"use case {use_case(cfg)!r} needs an approver's sign-off of snapshot {snapshot.id}: "
             f"goldloop snapshot signoff {snapshot.id} --approver NAME"),
            {"signoffs": len(signed)}))

    for override in store.overrides(snapshot.id):
        for res in results:
            if (not res.passed and res.rule == override["rule"] and res.rule not in UNOVERRIDABLE
                    and override["stage"] in (stage, "all")):
                res.overridden_by = f"{override['approver']}: {override['reason']}"
    return results


def enforce(store: Store, cfg: Config, snapshot: Snapshot, stage: str,
            records: list[Record] | None = None, tally: RowTally | None = None) -> list[PolicyResult]:
    """The results of :func:`check`, or :class:`PolicyError` when a rule blocks ``stage``."""
    results = check(store, cfg, snapshot, stage, records, tally)
    failures = [r for r in results if r.blocking]
    if failures:
        lines = [f"snapshot {snapshot.id} breaks the policy of use case {use_case(cfg)!r} at the {stage} stage:"]
        lines += [f"  - {r.rule}: {r.message}" for r in failures]
        if any(r.rule not in UNOVERRIDABLE for r in failures):
            rule = next(r.rule for r in failures if r.rule not in UNOVERRIDABLE)
            lines.append(f"An approver may override a rule with a reason, which is audited: goldloop snapshot "
                         f"override {snapshot.id} --rule {rule} --stage {stage} --approver NAME --reason TEXT")
        raise PolicyError("\n".join(lines), failures)
    return results


@dataclass
class TrainingCheck:
    """What :func:`check_training_policy` found out about an export folder."""

    snapshot_id: str | None     # the project's snapshot the export holds; None when the project has none
    note: str = ""              # what the check relied on, for the person training to read


def check_training_policy(export_dir: Path, store: Store | None = None, cfg: Config | None = None) -> TrainingCheck:
    """Check ``[policy]`` at training time for the snapshot that an export folder holds.

    Pass the project's ``store`` and ``cfg`` when training happens in a project: an export of a
    snapshot the project holds is then checked against the project's policy now, sign-off
    included, and the snapshot id comes back so the trained model can be recorded against it.
    An export from elsewhere (or training outside a project) is trusted only as far as the
    policy results written into its manifest at export time, and the note says so. Raises
    :class:`PolicyError` for a rule that blocks training, :class:`GoldloopError` for a folder
    that goldloop export did not write.
    """
    from .export import EXPORT_MANIFEST      # not at the top: goldloop.export imports this module (via snapshot)

    manifest_path = Path(export_dir) / EXPORT_MANIFEST
    if not manifest_path.is_file():
        raise GoldloopError(f"{export_dir} has no {EXPORT_MANIFEST}: train on a folder written by goldloop export "
                            "(or pass --unmanaged for other data: no policy is checked then)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise GoldloopError(f"{manifest_path} is not valid JSON ({exc}); export the snapshot again") from exc
    if not isinstance(manifest, dict):
        raise GoldloopError(f"{manifest_path} holds no export manifest (a JSON object); export the snapshot again")
    snapshot_id = str(manifest.get("snapshot", ""))
    if store is not None and cfg is not None:
        snapshot = store.get_snapshot(snapshot_id)
        if snapshot is not None:
            enforce(store, cfg, snapshot, "train")
            return TrainingCheck(snapshot.id)
    blocking = [r for r in manifest.get("policy_results") or []
                if isinstance(r, dict) and not r.get("passed", True) and not r.get("overridden_by")]
    if blocking:
        raise GoldloopError(f"the export of snapshot {snapshot_id} failed policy rule(s) "
                            f"{', '.join(str(r.get('rule')) for r in blocking)} when it was written")
    why = (f"snapshot {snapshot_id} is not in this project" if store is not None
           else f"no {CONFIG_FILE} here to check snapshot {snapshot_id} against")
    return TrainingCheck(None, f"{why}: relying on the policy results recorded at export time")


def citations(store: Store, cfg: Config, text: str, top: int = 5, embedder: Any = None) -> list[dict[str, Any]]:
    """The human-approved examples nearest to ``text`` (cosine similarity of the project's embedder),
    so a model's decision on ``text`` can be defended by citing the labelled data it rests on: gold-
    train records (with the file and row they were ingested from) and pool records whose label a
    reviewer confirmed or corrected (with the reviewer; a simulated reviewer is marked as such).
    Each carries its source class (:mod:`goldloop.sources`) and, for a public source, its citation.

    Held-out records are never cited: they stay out of everything that could shape a model.
    """
    import numpy as np

    from .embed import CachedEmbedder, make_embedder
    from .records import normalize_text

    if not text.strip():
        raise GoldloopError("give the model input to cite gold examples for (TEXT is empty)")
    if top < 1:
        raise GoldloopError("--top must be at least 1")
    approved = approved_examples(store)
    if not approved:
        raise GoldloopError("there are no gold-train records to cite: run goldloop ingest first")
    embedder = embedder or CachedEmbedder(make_embedder(cfg.embed), store)
    vecs = np.asarray(embedder.embed([r.text for r, _ in approved]), dtype=np.float32)
    query = np.asarray(embedder.embed([normalize_text(text, cfg.ingest.normalize)]), dtype=np.float32)[0]
    norms = np.linalg.norm(vecs, axis=1) * (np.linalg.norm(query) or 1.0)
    sims = (vecs @ query) / np.where(norms == 0, 1.0, norms)
    order = np.argsort(-sims, kind="stable")[:top]
    out = []
    for i in order:
        rec, (reviewer, simulated, source) = approved[i]
        row = {"id": rec.id, "label": rec.label, "text": rec.text, "similarity": round(float(sims[i]), 4),
               "source": source, "reviewer": reviewer, "simulated": simulated,
               "source_class": source_class(rec)}
        row.update({k: rec.provenance.params[k] for k in ("citation", "license") if k in rec.provenance.params})
        out.append(row)
    return out


def approved_examples(store: Store) -> list[tuple[Record, tuple[str, bool, str]]]:
    """Gold-train records and reviewer-answered pool rows, each with (reviewer, simulated, source):
    the reviewer is "" for ingested gold; source is the file and row the text came from."""
    from .records import CORRECT, SUGGEST

    out: list[tuple[Record, tuple[str, bool, str]]] = [
        (r, ("", False, r.provenance.source)) for r in store.records(origin="gold", split="train")]
    pool = store.records(origin="pool")
    states = review_states(store.decisions()) if pool else {}
    by_id = {r.id: r for r in pool}

    def origin_of(rec: Record) -> str:
        seen = set()
        while rec.provenance.parents and rec.id not in seen:
            seen.add(rec.id)
            parent = by_id.get(rec.provenance.parents[0])
            if parent is None:
                break
            rec = parent
        return rec.provenance.source

    for rec in pool:
        state = states.get(rec.id)
        if rec.provenance.strategy == SUGGEST and state is not None and state.action == "accept":
            out.append((rec, (state.reviewer, state.simulated, origin_of(rec))))
        elif rec.provenance.strategy == CORRECT and rec.provenance.parents:
            answer = states.get(rec.provenance.parents[0])          # the correction still stands
            if answer is not None and answer.action == "edit" and answer.new_record_id == rec.id:
                out.append((rec, (answer.reviewer, answer.simulated, origin_of(rec))))
    return out

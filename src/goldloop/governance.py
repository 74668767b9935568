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
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, Config
from .errors import GoldloopError
from .lineage import ancestry
from .records import Record, Snapshot, did_you_mean, text_hash
from .review import review_states
from .sources import class_counts, source_class
from .store import Store
from .suites import suite_copies

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


@dataclass
class PolicyResult:
    rule: str
    passed: bool
    message: str
    numbers: dict[str, Any]
    overridden_by: str = ""         # "approver: reason" when an approver let it through

    @property
    def blocking(self) -> bool:
        return not self.passed and not self.overridden_by

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def use_case(cfg: Config) -> str:
    return cfg.policy.use_case or cfg.project.name


def check(store: Store, cfg: Config, snapshot: Snapshot, stage: str,
          records: list[Record] | None = None) -> list[PolicyResult]:
    """Every rule that applies at ``stage``, passed or not, with overrides applied."""
    if stage not in STAGES:
        raise ValueError(f"stage is one of {', '.join(STAGES)}, not {stage!r}")
    pol = cfg.policy
    rows = records if records is not None else store.records(ids=snapshot.record_ids)
    total = len(rows)
    gold = [r for r in rows if r.origin == "gold"]
    made = [r for r in rows if not r.real]          # drafts and edits; answered pool rows are real
    results: list[PolicyResult] = [_isolation(store, rows), _suite_isolation(store, rows)]

    results.append(PolicyResult(
        "no_synthetic_only", bool(gold),
        f"the training set has {len(gold)} real gold rows" if gold else
        f"the training set has no real gold rows ({total} rows, all synthetic or edited): training on "
        "synthetic data alone is not allowed", {"gold": len(gold), "rows": total}))

    labels = cfg.project.labels or store.labels()
    per_label = Counter(r.label for r in gold)
    thin = {label: per_label.get(label, 0) for label in labels if per_label.get(label, 0) < pol.min_gold_per_label}
    results.append(PolicyResult(
        "min_gold_per_label", not thin,
        (f"every label has at least {pol.min_gold_per_label} gold rows" if not thin else
         f"{len(thin)} label(s) have fewer than {pol.min_gold_per_label} gold rows: "
         + ", ".join(f"{k} has {v}" for k, v in sorted(thin.items()))
         + ". Ingest more gold examples for them."),
        {"minimum": pol.min_gold_per_label, "short": thin}))

    share = len(made) / total if total else 0.0
    results.append(PolicyResult(
        "max_synthetic_share", share <= pol.max_synthetic_share + 1e-12,
        f"the training set is {share:.1%} synthetic ({len(made)} of {total} rows); the limit is "
        f"{pol.max_synthetic_share:.0%}" + ("" if share <= pol.max_synthetic_share + 1e-12 else
                                           ". Add gold data or keep fewer synthetic rows."),
        {"synthetic": len(made), "rows": total, "share": round(share, 4), "limit": pol.max_synthetic_share}))

    if pol.gold_only_labels:
        results.append(_gold_only(pol.gold_only_labels, labels, rows))
    caps = {c: getattr(pol, f"max_{c}_share") for c in CAPPED_CLASSES}
    if any(cap < 1.0 for cap in caps.values()):
        results.append(_class_shares(caps, rows))
    if pol.external_license_required:
        results.append(_licences(rows))

    if pol.review_required != "none":
        results.append(_review(store, pol.review_required, pol.review_sample_rate, made))

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
            records: list[Record] | None = None) -> list[PolicyResult]:
    """The results of :func:`check`, or :class:`PolicyError` when a rule blocks ``stage``."""
    results = check(store, cfg, snapshot, stage, records)
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


def _isolation(store: Store, rows: list[Record]) -> PolicyResult:
    heldout = store.records(split="heldout")
    held_ids = {r.id for r in heldout}
    # a pair's prompt and response are both held-out text: neither side of a row may repeat either
    held_hashes = {text_hash(r.text) for r in heldout} | {text_hash(r.response) for r in heldout if r.is_pair}
    in_set = [r.id for r in rows if r.id in held_ids or r.split == "heldout"]
    lines = ancestry(store, [r for r in rows if r.origin != "gold"])
    seeded = [r.id for r in rows if r.origin != "gold" and lines[r.id] & held_ids]
    same_text = [r.id for r in rows if r.origin != "gold" and (text_hash(r.text) in held_hashes or (
        r.is_pair and text_hash(r.response) in held_hashes))]
    bad = len(in_set) + len(seeded) + len(same_text)
    if not bad:
        return PolicyResult("heldout_isolation", True, f"no row touches the {len(heldout)} held-out records",
                            {"heldout": len(heldout)})
    parts = []
    if in_set:
        parts.append(f"{len(in_set)} held-out record(s) are in the training set (e.g. {in_set[0]})")
    if seeded:
        parts.append(f"{len(seeded)} row(s) were drafted from held-out seeds (e.g. {seeded[0]})")
    if same_text:
        parts.append(f"{len(same_text)} row(s) repeat a held-out text (e.g. {same_text[0]})")
    return PolicyResult("heldout_isolation", False, "; ".join(parts) + ". Held-out data must never reach training.",
                        {"heldout_in_set": len(in_set), "heldout_seeded": len(seeded), "heldout_text": len(same_text)})


def _suite_isolation(store: Store, rows: list[Record]) -> PolicyResult:
    cases = store.suite_text_hashes()
    same = suite_copies(rows, cases)
    if not same:
        return PolicyResult("suite_isolation", True, f"no row repeats the text of the {len(cases)} stress-test suite "
                                                     "cases", {"suite_cases": len(cases)})
    return PolicyResult("suite_isolation", False,
                        f"{len(same)} row(s) repeat the text of a stress-test suite case (e.g. {same[0].id}, suite "
                        f"{cases[text_hash(same[0].text)]!r}). Suites are scored on, never trained on.",
                        {"suite_text": len(same)})


def _gold_only(gold_only: list[str], labels: list[str], rows: list[Record]) -> PolicyResult:
    """Rows of the gold-only labels must be real; a name the project does not know is a failure too,
    so that a misspelt red line never goes silently unguarded."""
    unknown = [lab for lab in gold_only if lab not in labels]
    bad = [r for r in rows if r.label in set(gold_only) and not r.real]
    per = Counter(r.label for r in bad)
    parts = []
    if bad:
        parts.append(f"{len(bad)} synthetic, edited or machine-labelled row(s) of gold-only label(s) "
                     + ", ".join(f"{lab!r} ({n})" for lab, n in sorted(per.items()))
                     + f" (e.g. {bad[0].id}); [policy] gold_only_labels says their training rows must be real")
    if unknown:
        hints = [f"{lab!r}" + (f" (did you mean {hint!r}?)" if (hint := did_you_mean(lab, labels)) else "")
                 for lab in unknown]
        parts.append(f"[policy] gold_only_labels names label(s) the project does not have: {', '.join(hints)}")
    return PolicyResult(
        "gold_only_labels", not parts,
        "; ".join(parts) + "." + (" Reject those rows." if bad else "") + (" Fix the setting." if unknown else "")
        if parts else
        f"every row of {', '.join(repr(lab) for lab in gold_only)} is real",
        {"labels": list(gold_only), "refused": len(bad), "by_label": dict(per), "unknown": unknown})


def _class_shares(caps: dict[str, float], rows: list[Record]) -> PolicyResult:
    counts = class_counts(rows)
    total = len(rows)
    shares = {c: (counts[c] / total if total else 0.0) for c in caps}
    over = {c: s for c, s in shares.items() if s > caps[c] + 1e-12}
    described = [f"{c} rows are {shares[c]:.1%} ({counts[c]} of {total}); the limit is {caps[c]:.0%}"
                 for c in caps if caps[c] < 1.0]
    message = ("; ".join(described) if not over else
               "; ".join(f"{c} rows are {shares[c]:.1%} ({counts[c]} of {total}), over the limit of {caps[c]:.0%} "
                         f"([policy] max_{c}_share)" for c in over) + ". Keep fewer of them or add first-party rows.")
    return PolicyResult("max_source_class_share", not over, message,
                        {"rows": total, "counts": counts, "shares": {c: round(v, 4) for c, v in shares.items()},
                         "limits": caps})


def _licences(rows: list[Record]) -> PolicyResult:
    external = [r for r in rows if source_class(r) == "external"]
    missing = [r for r in external if not r.provenance.params.get("license")]
    cites = sorted({str(r.provenance.params.get("citation", "")) for r in missing})
    return PolicyResult(
        "external_license", not missing,
        (f"all {len(external)} rows from public sources carry a licence" if not missing else
         f"{len(missing)} of {len(external)} rows from public sources have no licence (e.g. {missing[0].id}, "
         f"from {', '.join(cites[:3])}); [policy] external_license_required refuses them. Ingest the source "
         "again with --license, or leave it out."),
        {"external": len(external), "without_license": len(missing), "citations": cites})


def _review(store: Store, mode: str, rate: float, made: list[Record]) -> PolicyResult:
    """Rows a person accepted or wrote; a simulated reviewer's decisions never count."""
    decisions = store.decisions()
    states = review_states(decisions)
    simulated_edits = {d.new_record_id for d in decisions if d.simulated and d.new_record_id}
    reviewed = [r for r in made if (r.origin == "edited" and r.id not in simulated_edits)
                or (states.get(r.id) is not None and states[r.id].action == "accept" and not states[r.id].simulated)]
    by_sim = sum(1 for r in made if states.get(r.id) is not None and states[r.id].simulated
                 and states[r.id].action == "accept")
    sim_note = (f" ({by_sim} accepted by a simulated reviewer only, which never counts as human review)"
                if by_sim else "")
    if mode == "all":
        missing = len(made) - len(reviewed)
        return PolicyResult(
            "human_review", missing == 0,
            (f"all {len(made)} synthetic rows were reviewed by a human" if missing == 0 else
             f"{missing} of {len(made)} synthetic rows were not accepted by a reviewer{sim_note}; the policy "
             "requires human review of every synthetic row. Review them (goldloop review or goldloop serve)."),
            {"synthetic": len(made), "reviewed": len(reviewed), "required": len(made)})
    need = math.ceil(rate * len(made))
    return PolicyResult(
        "human_review", len(reviewed) >= need,
        f"{len(reviewed)} of {len(made)} synthetic rows were reviewed{sim_note}; the policy samples {rate:.0%}, "
        f"so {need} must be" + ("" if len(reviewed) >= need else ". Review more of them."),
        {"synthetic": len(made), "reviewed": len(reviewed), "required": need, "rate": rate})


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

"""What the ``[policy]`` rules need to know of a training set, summed a page of rows at a time.

A snapshot of millions of rows is checked without holding them: :class:`RowTally` keeps counts,
the first example of each kind of failure, and the few ids a rule's message names.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from .config import Config
from .lineage import ancestry
from .records import Record, did_you_mean, text_hash
from .review import review_states
from .sources import SourceTally
from .store import Store


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


class _Found:
    """How many rows showed one kind of failure, and the first of them."""

    def __init__(self) -> None:
        self.count = 0
        self.first: Record | None = None

    def add(self, rec: Record) -> None:
        self.count += 1
        if self.first is None:
            self.first = rec


class RowTally:
    """The counts behind every rule of :func:`goldloop.governance.check`; :meth:`add` takes a page."""

    def __init__(self, store: Store, cfg: Config) -> None:
        self.store = store
        heldout = store.records(split="heldout")
        self.heldout = len(heldout)
        self.held_ids = {r.id for r in heldout}
        # a pair's prompt and response are both held-out text: neither side of a row may repeat either
        self.held_hashes = {text_hash(r.text) for r in heldout} | {text_hash(r.response) for r in heldout if r.is_pair}
        self.cases = store.suite_text_hashes()
        self.red_labels = list(cfg.policy.gold_only_labels)
        self.red = set(self.red_labels)
        self.review_mode = cfg.policy.review_required
        self.total = self.gold = self.made = 0
        self.gold_per_label: Counter[str] = Counter()
        self.in_set, self.seeded, self.same_text, self.suite = _Found(), _Found(), _Found(), _Found()
        self.red_rows, self.red_by_label = _Found(), Counter[str]()
        self.sources = SourceTally()
        self.external, self.unlicensed, self.unlicensed_cites = 0, _Found(), set[str]()
        self.reviewed = self.by_simulated = 0
        self._states: dict[str, Any] | None = None
        self._simulated_edits: set[str] = set()

    def _review_states(self) -> dict[str, Any]:
        if self._states is None:
            decisions = self.store.decisions()
            self._states = review_states(decisions)
            self._simulated_edits = {d.new_record_id for d in decisions if d.simulated and d.new_record_id}
        return self._states

    def add(self, rows: list[Record]) -> None:
        made = [r for r in rows if r.origin != "gold"]
        lines = ancestry(self.store, made) if made and self.held_ids else {}
        for r in rows:
            self.total += 1
            cls = self.sources.add(r)
            if r.origin == "gold":
                self.gold += 1
                self.gold_per_label[r.label] += 1
            if r.id in self.held_ids or r.split == "heldout":
                self.in_set.add(r)
            if cls == "external":
                self.external += 1
                if not r.provenance.params.get("license"):
                    self.unlicensed.add(r)
                    self.unlicensed_cites.add(str(r.provenance.params.get("citation", "")))
            if r.label in self.red and not r.real:
                self.red_rows.add(r)
                self.red_by_label[r.label] += 1
        for r in made:
            if lines.get(r.id, set()) & self.held_ids:
                self.seeded.add(r)
            text = text_hash(r.text)
            if text in self.held_hashes or (r.is_pair and text_hash(r.response) in self.held_hashes):
                self.same_text.add(r)
            if text in self.cases:
                self.suite.add(r)
        synthetic = [r for r in rows if not r.real]        # drafts and edits; answered pool rows are real
        self.made += len(synthetic)
        if self.review_mode != "none" and synthetic:
            states = self._review_states()
            for r in synthetic:
                state = states.get(r.id)
                if (r.origin == "edited" and r.id not in self._simulated_edits) or (
                        state is not None and state.action == "accept" and not state.simulated):
                    self.reviewed += 1
                if state is not None and state.simulated and state.action == "accept":
                    self.by_simulated += 1

    def isolation(self) -> PolicyResult:
        if not (self.in_set.count or self.seeded.count or self.same_text.count):
            return PolicyResult("heldout_isolation", True, f"no row touches the {self.heldout} held-out records",
                                {"heldout": self.heldout})
        parts = []
        if self.in_set.first:
            parts.append(f"{self.in_set.count} held-out record(s) are in the training set (e.g. {self.in_set.first.id})")
        if self.seeded.first:
            parts.append(f"{self.seeded.count} row(s) were drafted from held-out seeds (e.g. {self.seeded.first.id})")
        if self.same_text.first:
            parts.append(f"{self.same_text.count} row(s) repeat a held-out text (e.g. {self.same_text.first.id})")
        return PolicyResult("heldout_isolation", False, "; ".join(parts) + ". Held-out data must never reach training.",
                            {"heldout_in_set": self.in_set.count, "heldout_seeded": self.seeded.count,
                             "heldout_text": self.same_text.count})

    def suite_isolation(self) -> PolicyResult:
        first = self.suite.first
        if first is None:
            return PolicyResult("suite_isolation", True, f"no row repeats the text of the {len(self.cases)} "
                                                         "stress-test suite cases", {"suite_cases": len(self.cases)})
        return PolicyResult("suite_isolation", False,
                            f"{self.suite.count} row(s) repeat the text of a stress-test suite case (e.g. {first.id}, "
                            f"suite {self.cases[text_hash(first.text)]!r}). Suites are scored on, never trained on.",
                            {"suite_text": self.suite.count})

    def gold_only_labels(self, labels: list[str]) -> PolicyResult:
        """Rows of the gold-only labels must be real; a name the project does not know is a failure
        too, so that a misspelt red line never goes silently unguarded."""
        gold_only = self.red_labels
        unknown = [lab for lab in gold_only if lab not in labels]
        per = self.red_by_label
        parts = []
        if self.red_rows.first:
            parts.append(f"{self.red_rows.count} synthetic, edited or machine-labelled row(s) of gold-only label(s) "
                         + ", ".join(f"{lab!r} ({n})" for lab, n in sorted(per.items()))
                         + f" (e.g. {self.red_rows.first.id}); [policy] gold_only_labels says their training rows "
                         "must be real")
        if unknown:
            hints = [f"{lab!r}" + (f" (did you mean {hint!r}?)" if (hint := did_you_mean(lab, labels)) else "")
                     for lab in unknown]
            parts.append(f"[policy] gold_only_labels names label(s) the project does not have: {', '.join(hints)}")
        return PolicyResult(
            "gold_only_labels", not parts,
            "; ".join(parts) + "." + (" Reject those rows." if self.red_rows.count else "")
            + (" Fix the setting." if unknown else "")
            if parts else f"every row of {', '.join(repr(lab) for lab in gold_only)} is real",
            {"labels": list(gold_only), "refused": self.red_rows.count, "by_label": dict(per), "unknown": unknown})

    def class_shares(self, caps: dict[str, float]) -> PolicyResult:
        counts = self.sources.counts()
        total = self.total
        shares = {c: (counts[c] / total if total else 0.0) for c in caps}
        over = {c: s for c, s in shares.items() if s > caps[c] + 1e-12}
        described = [f"{c} rows are {shares[c]:.1%} ({counts[c]} of {total}); the limit is {caps[c]:.0%}"
                     for c in caps if caps[c] < 1.0]
        message = ("; ".join(described) if not over else
                   "; ".join(f"{c} rows are {shares[c]:.1%} ({counts[c]} of {total}), over the limit of "
                             f"{caps[c]:.0%} ([policy] max_{c}_share)" for c in over)
                   + ". Keep fewer of them or add first-party rows.")
        return PolicyResult("max_source_class_share", not over, message,
                            {"rows": total, "counts": counts, "shares": {c: round(v, 4) for c, v in shares.items()},
                             "limits": caps})

    def licences(self) -> PolicyResult:
        missing, cites = self.unlicensed, sorted(self.unlicensed_cites)
        return PolicyResult(
            "external_license", not missing.count,
            (f"all {self.external} rows from public sources carry a licence" if not missing.first else
             f"{missing.count} of {self.external} rows from public sources have no licence (e.g. {missing.first.id}, "
             f"from {', '.join(cites[:3])}); [policy] external_license_required refuses them. Ingest the source "
             "again with --license, or leave it out."),
            {"external": self.external, "without_license": missing.count, "citations": cites})

    def review(self, mode: str, rate: float) -> PolicyResult:
        """Rows a person accepted or wrote; a simulated reviewer's decisions never count."""
        made, reviewed = self.made, self.reviewed
        sim_note = (f" ({self.by_simulated} accepted by a simulated reviewer only, which never counts as human "
                    "review)" if self.by_simulated else "")
        if mode == "all":
            missing = made - reviewed
            return PolicyResult(
                "human_review", missing == 0,
                (f"all {made} synthetic rows were reviewed by a human" if missing == 0 else
                 f"{missing} of {made} synthetic rows were not accepted by a reviewer{sim_note}; the policy "
                 "requires human review of every synthetic row. Review them (goldloop review or goldloop serve)."),
                {"synthetic": made, "reviewed": reviewed, "required": made})
        need = math.ceil(rate * made)
        return PolicyResult(
            "human_review", reviewed >= need,
            f"{reviewed} of {made} synthetic rows were reviewed{sim_note}; the policy samples {rate:.0%}, "
            f"so {need} must be" + ("" if reviewed >= need else ". Review more of them."),
            {"synthetic": made, "reviewed": reviewed, "required": need, "rate": rate})

"""Stress-test suites: drafted cases, reviewers' decisions on them, frozen versions (all audited)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ..records import now, text_hash
from ._audit import AuditLog
from ._connection import where


@dataclass(frozen=True)
class SuiteCase:
    """One drafted case of a suite: the text, the label it was drafted for, where it came from,
    and (``dropped``) why a filter refused it, or "" when it reached review."""

    id: str
    suite: str
    text: str
    label: str
    strategy: str
    seeds: tuple[str, ...]
    backend: str
    model: str
    request_key: str
    dropped: str = ""
    created_at: float = 0.0


@dataclass(frozen=True)
class SuiteDecision:
    """A reviewer's call on a case: accept (the drafted label is right), correct (``expected``
    is the right one) or reject (not a usable case)."""

    case_id: str
    action: str
    expected: str
    reviewer: str
    simulated: bool = False
    created_at: float = 0.0
    id: int | None = None


@dataclass(frozen=True)
class SuiteVersion:
    """A frozen suite: ``cases`` is ``[[case id, text, expected label], ...]``, sorted by id;
    ``digest`` is their content hash. Never changed once stored."""

    suite: str
    version: int
    digest: str
    cases: tuple[tuple[str, str, str], ...]
    created_at: float = 0.0


class SuiteTables(AuditLog):
    """The suite tables of a SQL store."""

    def add_suite_cases(self, cases: Iterable[SuiteCase]) -> int:
        """Store new cases (a case already stored is left as it is); how many were new."""
        rows = list(cases)
        added: list[list[str]] = []
        with self.transaction() as db:
            for c in rows:
                cur = db.execute(
                    "INSERT INTO suite_cases (id, suite, text, text_hash, label, strategy, seeds, backend, model,"
                    " request_key, dropped, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    (c.id, c.suite, c.text, text_hash(c.text), c.label, c.strategy, json.dumps(list(c.seeds)),
                     c.backend, c.model, c.request_key, c.dropped, c.created_at or now()))
                if cur.rowcount:
                    added.append([c.id])
            if added:
                self.audit("suite.cases", {"suite": rows[0].suite, "cases": len(added),
                                           "rows": self._digests(db, "suite_cases", added)})
        return len(added)

    def suite_cases(self, suite: str | None = None) -> list[SuiteCase]:
        return self._cases(*where(suite=suite))

    def _cases(self, clause: str, args: list[str]) -> list[SuiteCase]:
        return [SuiteCase(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7], r[8], r[9], r[10])
                for r in self.query("SELECT id, suite, text, label, strategy, seeds, backend, model, request_key,"
                                    f" dropped, created_at FROM suite_cases {clause} ORDER BY {self.rowid}", args)]

    def set_suite_case_filters(self, dropped: dict[str, str]) -> None:
        """Record the filters' judgement of cases stored before it: case id -> why a filter dropped
        it, or "" when it reaches review."""
        if not dropped:
            return
        with self.transaction() as db:
            db.executemany("UPDATE suite_cases SET dropped = ? WHERE id = ?", [(why, cid) for cid, why in dropped.items()])
            self.audit("suite.filtered", {"cases": len(dropped), "dropped": sum(bool(w) for w in dropped.values()),
                                          "rows": self._digests(db, "suite_cases", [[cid] for cid in dropped])})

    def get_suite_case(self, case_id: str) -> SuiteCase | None:
        found = [c for c in self._cases("WHERE id = ?", [case_id])]
        return found[0] if found else None

    def suite_text_hashes(self) -> dict[str, str]:
        """text hash -> suite name, of every case that reached review (a dropped draft is no case)."""
        return {h: s for h, s in self.query("SELECT text_hash, suite FROM suite_cases WHERE dropped = ''")}

    def add_suite_decision(self, decision: SuiteDecision) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO suite_decisions (case_id, action, expected, reviewer, simulated, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                (decision.case_id, decision.action, decision.expected, decision.reviewer, int(decision.simulated),
                 decision.created_at or now()))
            self.audit("suite.decision", {"case": decision.case_id, "action": decision.action,
                                          "simulated": decision.simulated,
                                          "rows": self._digests(db, "suite_decisions", [[new_id]])},
                       actor=decision.reviewer)
            return new_id

    def suite_decisions(self, suite: str | None = None) -> list[SuiteDecision]:
        """Every decision (oldest first), of one suite's cases or of all."""
        sql = ("SELECT d.case_id, d.action, d.expected, d.reviewer, d.simulated, d.created_at, d.id"
               " FROM suite_decisions d JOIN suite_cases c ON c.id = d.case_id")
        args: tuple[str, ...] = ()
        if suite is not None:
            sql, args = sql + " WHERE c.suite = ?", (suite,)
        return [SuiteDecision(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6])
                for r in self.query(sql + " ORDER BY d.id", args)]

    def add_suite_version(self, version: SuiteVersion, actor: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO suite_versions (suite, version, digest, cases, created_at) VALUES (?, ?, ?, ?, ?)",
                       (version.suite, version.version, version.digest, json.dumps([list(c) for c in version.cases]),
                        version.created_at or now()))
            self.audit("suite.freeze", {"suite": version.suite, "version": version.version, "digest": version.digest,
                                        "cases": len(version.cases),
                                        "rows": self._digests(db, "suite_versions", [(version.suite, version.version)])},
                       actor=actor)

    def suite_versions(self, suite: str | None = None) -> list[SuiteVersion]:
        """Frozen versions, by suite then version."""
        clause, args = where(suite=suite)
        return [SuiteVersion(r[0], r[1], r[2], tuple(tuple(c) for c in json.loads(r[3])), r[4])  # type: ignore[misc]
                for r in self.query(f"SELECT suite, version, digest, cases, created_at FROM suite_versions {clause}"
                                    " ORDER BY suite, version", args)]

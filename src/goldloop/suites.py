"""Stress-test suites: drafted edge cases a model is scored on every round and never trained on.

A suite is drafted like a round (the same strategies, ``[generate]`` rules and ``[llm]``
sampling, seeds drawn from gold *train* records only) and judged by the round's active filters,
except ``synthetic_selection.v1``: that one drops the drafts a gold-only model finds unlikely,
and a hard case is the point of a stress test. A case that copies a held-out, gold-train or
pool text is dropped whatever the filters say. Reviewers accept a case (its drafted label is the
expected one), correct it (another label is) or reject it; ``freeze`` turns the accepted and corrected
cases into an immutable, content-addressed version (a new freeze of other cases is a new
version).

Cases live in their own tables, never in ``records``: nothing that builds a training set can
select one, ``leakage.v1`` drops a round's draft that copies or nearly copies a case, and
:func:`goldloop.snapshot.build_snapshot` leaves out any row whose text is a case's (a policy no
override reaches, like held-out isolation). Every evaluation scores the
gold-only and the candidate model on each suite's newest version, apart from the held-out
figure; the loop compares the candidate with the kept model and, with ``[loop] suite_gate``,
refuses a round that drops a suite's pass rate by more than ``[loop] suite_max_drop``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .config import Config
from .errors import ConfigError, Interrupted, StageError, require_classify
from .generate import get_strategy
from .generate._runner import PlannedRequest, build_request
from .generate._strategies import Rules
from .interrupts import graceful_stop
from .llm import LLM, make_llm
from .progress import progress_bar
from .records import Provenance, Record, content_hash, normalize_text, now, text_hash
from .store import Store, SuiteCase, SuiteDecision, SuiteVersion

__all__ = ["DraftReport", "SELECTION", "case_states", "decide", "draft_suite", "freeze", "latest_versions",
           "loop_suites", "pending_cases", "plan_suite", "score_suites", "suite_copies", "suite_gate", "suite_texts",
           "valid_name"]

#: The round filter a suite skips: it drops exactly the hard cases a stress test wants.
SELECTION = "synthetic_selection.v1"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ACTIONS = ("accept", "correct", "reject")
#: Strategies a suite may use: those that draft for a label from its gold seeds alone
#: (targeted.v1 needs a confused pair, feedback.v1 reads training drafts).
SUITE_STRATEGIES = ("edge_case.v1", "harder.v1", "paraphrase.v1", "label.v1")
#: A case's ``dropped`` until the filters have judged it (it is neither reviewable nor protected yet).
UNFILTERED = "awaiting the filters"


def suite_copies(rows: Sequence[Record], known: Mapping[str, str] | set[str]) -> list[Record]:
    """The rows of ``rows`` that repeat a stress-test suite case's text (``known``: the cases' text
    hashes, as :meth:`Store.suite_text_hashes` gives them); gold rows are real and never a copy."""
    return [r for r in rows if r.origin != "gold" and text_hash(r.text) in known]


def valid_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"suite name {name!r}: use 1 to 64 lower-case letters, digits, '-' or '_', starting with "
                          "a letter or digit (e.g. 'chargebacks')")
    return name


@dataclass
class DraftReport:
    """What one ``suite create`` run did."""

    suite: str
    planned: int = 0
    answered_before: int = 0
    failed: int = 0
    drafted: int = 0                                            # replies stored in this run
    dropped: Counter[str] = field(default_factory=Counter)     # of the cases judged now: first failing filter
    to_review: int = 0                                          # of the cases judged now: passed every filter
    errors: Counter[str] = field(default_factory=Counter)


def _gold_by_label(store: Store, cfg: Config, name: str, strategy: str, per_label: int,
                   labels: Sequence[str]) -> dict[str, list[Record]]:
    """The gold-train records of each label a suite drafts for, once its settings are checked."""
    require_classify(cfg.project.task, "suites")
    valid_name(name)
    if strategy not in SUITE_STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r}: a suite is drafted with one of {', '.join(SUITE_STRATEGIES)}")
    if per_label < 1:
        raise ConfigError("--per-label must be at least 1")
    train = store.records(origin="gold", split="train")
    if not train:
        raise StageError("no gold training data yet; run `goldloop ingest FILE` first (suites are drafted from "
                         "gold-train seeds)")
    by_label: dict[str, list[Record]] = {}
    for rec in train:
        by_label.setdefault(rec.label, []).append(rec)
    unknown = sorted(set(labels) - set(by_label))
    if unknown:
        raise ConfigError(f"--labels: {', '.join(map(repr, unknown))} ha{'s' if len(unknown) == 1 else 've'} no "
                          f"gold-train rows; known labels: {', '.join(sorted(by_label))}")
    return {label: by_label[label] for label in sorted(labels or by_label)}


def plan_suite(store: Store, cfg: Config, llm: LLM, name: str, strategy: str, per_label: int,
               labels: Sequence[str] = ()) -> list[PlannedRequest]:
    """The suite's requests: ``per_label`` per label (all gold-train labels, or ``labels``), each
    from gold-*train* seeds drawn at random per request; the same every time for the same
    store, config, suite and strategy. Held-out records never reach a prompt."""
    g, rules = cfg.generate, Rules.from_config(cfg.generate)
    planned = []
    for label, pool in _gold_by_label(store, cfg, name, strategy, per_label, labels).items():
        rng = random.Random(content_hash(cfg.project.seed, "suite", name, strategy, label))
        for position in range(per_label):
            seeds = rng.sample(pool, min(g.seeds_per_prompt, len(pool)))
            p = build_request(cfg, llm, strategy, label, seeds, 0, position, rules=rules)
            key = content_hash("suite", name, p.request.key)
            planned.append(replace(p, request=replace(p.request, key=key, seed=int(key[:8], 16) & 0x7FFFFFFF)))
    return planned


def _judge(store: Store, cfg: Config, embedder: Any, drafts: list[Record]) -> dict[str, str]:
    """Record id -> why it is no case ("" when it reaches review): the round's active filters
    (less :data:`SELECTION`), then copies of held-out, gold-train, pool or earlier suite texts."""
    from .filters import FilterContext, active_filters

    why = {r.id: "" for r in drafts}
    latest = max([r.number for r in store.rounds()], default=0)
    ctx = FilterContext(store=store, cfg=cfg, round=latest + 1, embedder=embedder)   # after every round so far
    for flt in active_filters(cfg):
        if flt.name == SELECTION:
            continue
        for v in flt.judge(drafts, ctx):
            if not v.keep and not why[v.record_id]:
                why[v.record_id] = f"{v.filter}: {v.reason}"
    heldout = set(store.text_hashes(origin="gold", split="heldout"))
    gold = set(store.text_hashes(origin="gold", split="train"))
    pool = set(store.text_hashes(origin="pool"))
    known = store.suite_text_hashes()
    seen: set[str] = set()
    for r in drafts:
        h = text_hash(r.text)
        if why[r.id]:
            continue
        if not r.text.strip():
            why[r.id] = "empty: the reply held no case"
        elif h in heldout:
            why[r.id] = "copies a held-out record (held-out text never enters a suite)"
        elif h in gold:
            why[r.id] = "copies a gold-train record (a suite must be apart from training)"
        elif h in pool:
            why[r.id] = "copies a pool record (a real record that may yet be trained on)"
        elif h in known or h in seen:
            why[r.id] = f"duplicates a case of suite {known[h]!r}" if h in known else "duplicates another case"
        seen.add(h)
    return why


def draft_suite(store: Store, cfg: Config, llm: LLM | None, embedder: Callable[[], Any], name: str, strategy: str,
                per_label: int, labels: Sequence[str] = (), show_progress: bool = True) -> DraftReport:
    """Draft and filter the suite's cases. Each reply is stored as it arrives, marked
    :data:`UNFILTERED`; the filters then judge every case so marked (this run's, and any a
    killed run left), so a run stopped at any point and started again asks only for what is
    missing and loses nothing.

    ``llm``: None makes the ``[llm]`` backend once the settings are checked, and closes it
    before the filters run; ``embedder`` makes the filters' embedder then, so that a local
    model's cores are free first (two CPU-heavy jobs at once slow each other down many times
    over)."""
    _gold_by_label(store, cfg, name, strategy, per_label, labels)      # bad input fails before any model loads
    own = llm is None
    llm = llm or make_llm(cfg.llm, cfg.executor)
    try:
        planned = plan_suite(store, cfg, llm, name, strategy, per_label, labels)
        done = {c.request_key for c in store.suite_cases(name)}
        todo = [p for p in planned if p.request.key not in done]
        report = DraftReport(name, planned=len(planned), answered_before=len(planned) - len(todo))
        by_key = {p.request.key: p for p in todo}
        with graceful_stop(llm.stop) as stop, progress_bar(f"suite {name}: drafting", len(todo),
                                                          show_progress) as advance:
            for result in llm.complete([p.request for p in todo]):
                plan = by_key[result.key]
                advance(1)
                if not result.ok:                              # not stored: the next run asks again
                    report.failed += 1
                    report.errors[(result.error or "failed").split(":")[0]] += 1
                    continue
                text = normalize_text(get_strategy(plan.strategy).parse(result.text or "", cfg.generate.item_name,
                                                                       result.extra.get("parsed")),
                                      cfg.ingest.normalize)
                store.add_suite_cases([SuiteCase(
                    id=content_hash("suite-case", name, text, plan.label, plan.request.key), suite=name, text=text,
                    label=plan.label, strategy=plan.strategy, seeds=plan.seeds, backend=llm.backend,
                    model=llm.model, request_key=plan.request.key, dropped=UNFILTERED)])
                report.drafted += 1
    finally:
        if own:
            llm.close()
    if stop.signal:
        raise Interrupted(f"suite {name}: stopped by {stop.signal} after saving every reply in flight "
                          f"({report.drafted} drafted in this run). Run the same command again to continue.")
    unfiltered = [c for c in store.suite_cases(name) if c.dropped == UNFILTERED]
    if unfiltered:
        records = {c.id: Record.synthetic(c.text, c.label, Provenance(
            parents=c.seeds, strategy=c.strategy, backend=c.backend, model=c.model, request_key=c.request_key,
            source="suite", created_at=now())) for c in unfiltered}
        why = _judge(store, cfg, embedder(), list(records.values()))
        verdicts = {c.id: why[records[c.id].id] for c in unfiltered}
        store.set_suite_case_filters(verdicts)
        for reason in verdicts.values():
            if reason:
                report.dropped[reason.split(":")[0]] += 1
            else:
                report.to_review += 1
    store.log_event("suite.drafted", {"suite": name, "strategy": strategy, "per_label": per_label,
                                      "planned": report.planned, "drafted": report.drafted, "failed": report.failed,
                                      "to_review": report.to_review, "dropped": dict(report.dropped)})
    return report


def case_states(store: Store, name: str | None = None) -> dict[str, SuiteDecision]:
    """Case id -> the decision that stands on it (the latest, unless that was an undo)."""
    latest = {d.case_id: d for d in store.suite_decisions(name)}
    return {k: d for k, d in latest.items() if d.action != "undo"}


def pending_cases(store: Store, name: str) -> list[SuiteCase]:
    """The suite's cases that passed the filters and that no one has decided on yet."""
    states = case_states(store, name)
    return [c for c in store.suite_cases(name) if not c.dropped and c.id not in states]


def decide(store: Store, case: SuiteCase, action: str, reviewer: str, expected: str = "",
           known_labels: Sequence[str] = (), simulated: bool = False) -> SuiteDecision:
    """Store a reviewer's call on ``case``: accept (the drafted label is expected), correct (to
    ``expected``, one of ``known_labels``) or reject. A later call replaces an earlier one."""
    if action not in (*ACTIONS, "undo"):
        raise ConfigError(f"suite decision {action!r}: use one of {', '.join(ACTIONS)}, or undo")
    if case.dropped:
        raise StageError(f"case {case.id[:12]} was dropped by a filter ({case.dropped}); it cannot be reviewed")
    if action == "correct":
        from .review import EditRefused, check_label

        try:
            check_label(expected, known_labels)
        except EditRefused as exc:
            raise ConfigError(f"case {case.id[:12]}: {exc}") from None
        if not expected:
            raise ConfigError(f"case {case.id[:12]}: a correction needs the expected label")
    else:
        expected = case.label if action == "accept" else ""
    decision = SuiteDecision(case.id, action, expected, reviewer, simulated, now())
    return replace(decision, id=store.add_suite_decision(decision))


def freeze(store: Store, name: str, actor: str) -> tuple[SuiteVersion, bool]:
    """The suite's accepted and corrected cases as a new immutable version (and True), or its
    newest version (and False) when those cases are the ones it already holds."""
    valid_name(name)
    states = case_states(store, name)
    cases = tuple(sorted((c.id, c.text, states[c.id].expected) for c in store.suite_cases(name)
                         if c.id in states and states[c.id].action in ("accept", "correct")))
    if not cases:
        raise StageError(f"suite {name!r} has no accepted case yet: draft it with `goldloop suite create {name}` "
                         f"and review it with `goldloop suite review {name}`")
    digest = content_hash("suite-version", name, [list(c) for c in cases])
    versions = store.suite_versions(name)
    if versions and versions[-1].digest == digest:
        return versions[-1], False
    version = SuiteVersion(name, (versions[-1].version + 1) if versions else 1, digest, cases, now())
    store.add_suite_version(version, actor)
    return version, True


def latest_versions(store: Store) -> list[SuiteVersion]:
    """The newest frozen version of every suite, by name."""
    newest: dict[str, SuiteVersion] = {}
    for v in store.suite_versions():
        newest[v.suite] = v
    return [newest[k] for k in sorted(newest)]


def score_suites(versions: Sequence[SuiteVersion], predictions: Mapping[str, Sequence[str]],
                 max_flipped: int = 20) -> dict[str, dict[str, Any]]:
    """Per suite: its version, size, each model's pass rate (share of cases it labels as
    expected) and, when two or more models are given, the cases whose outcome differs between
    the first and the last model (up to ``max_flipped``, newly failing first). ``predictions``:
    per model, its labels for :func:`suite_texts` of ``versions``, in that order."""
    out: dict[str, dict[str, Any]] = {}
    start = 0
    for v in versions:
        end = start + len(v.cases)
        expected = [c[2] for c in v.cases]
        preds = {m: list(p[start:end]) for m, p in predictions.items()}
        rates = {m: round(sum(p == y for p, y in zip(ps, expected)) / len(expected), 4) for m, ps in preds.items()}
        entry: dict[str, Any] = {"version": v.version, "digest": v.digest, "cases": len(v.cases), "pass_rate": rates}
        if len(preds) > 1:
            first, last = list(preds)[0], list(preds)[-1]
            entry["flipped"] = _flips(v, expected, preds[first], preds[last], first, last, max_flipped)
        out[v.suite] = entry
        start = end
    return out


def _flips(v: SuiteVersion, expected: list[str], before: list[str], after: list[str], first: str, last: str,
           limit: int) -> dict[str, Any]:
    cases = []
    for (cid, text, want), b, a in zip(v.cases, before, after):
        if (b == want) != (a == want):
            cases.append({"case": cid[:12], "text": text[:300], "expected": want, first: b, last: a,
                          "now": "fails" if a != want else "passes"})
    cases.sort(key=lambda c: c["now"] != "fails")
    return {"from": first, "to": last, "newly_failing": sum(c["now"] == "fails" for c in cases),
            "newly_passing": sum(c["now"] == "passes" for c in cases), "cases": cases[:limit]}


def suite_gate(cfg: Config, scored: Mapping[str, Mapping[str, Any]], baseline: str, candidate: str) -> list[str]:
    """With ``[loop] suite_gate``: one message per suite whose pass rate fell from ``baseline`` to
    ``candidate`` by more than ``[loop] suite_max_drop``; empty otherwise."""
    if not cfg.loop.suite_gate:
        return []
    out = []
    for name, entry in scored.items():
        before, after = entry["pass_rate"][baseline], entry["pass_rate"][candidate]
        if before - after > cfg.loop.suite_max_drop + 1e-12:
            out.append(f"suite {name!r} v{entry['version']} pass rate fell {before:.1%} -> {after:.1%}, more than "
                       f"[loop] suite_max_drop ({cfg.loop.suite_max_drop:.1%})")
    return out


def suite_texts(versions: Sequence[SuiteVersion]) -> list[str]:
    """Every case text of ``versions``, in order (what a model predicts to be scored on them)."""
    return [c[1] for v in versions for c in v.cases]


def loop_suites(versions: Sequence[SuiteVersion], evaluated: Mapping[str, Mapping[str, Any]],
                kept: Sequence[str], candidate: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A loop round's suite figures: the gold-only pass rate (from the round's evaluation), the
    kept model's and the candidate's, and the cases that flipped between those two. ``kept``
    and ``candidate`` are predictions over :func:`suite_texts` of ``versions``."""
    out = score_suites(versions, {"kept": kept, "candidate": candidate})
    for name, entry in out.items():
        gold = (evaluated.get(name) or {}).get("pass_rate", {}).get("gold_only")
        entry["pass_rate"] = {"gold_only": gold, **entry["pass_rate"]}
    return out

"""Plan a round's generation requests, send them, and commit each reply as it arrives.

Every request has a content-addressed key (strategy, template, prompt, sampling, model,
round, position). A reply is committed in one transaction with the records it yields, so a
run killed at any point and started again sends only what is missing: nothing is lost and
nothing is generated twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from ..config import Config
from ..errors import ConfigError, Interrupted, StageError, require_classify
from ..llm import LLM, CompletionRequest, CompletionResult, sampling_controls
from ..progress import progress_bar
from ..records import Provenance, Record, content_hash, normalize_text, now
from ..interrupts import graceful_stop
from ..store import GenerationRow, Store
from ._accepted import accepted_drafts
from ._strategies import Rules, get_strategy


@dataclass(frozen=True)
class PlannedRequest:
    request: CompletionRequest
    strategy: str
    label: str
    seeds: tuple[str, ...]
    template_hash: str


@dataclass
class GenerateReport:
    round: int
    planned: int = 0
    already_done: int = 0
    succeeded: int = 0
    failed: int = 0
    records: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    # "strategy / backend / model" -> requests, succeeded, failed, tokens in and out, request seconds
    by_strategy: dict[str, dict[str, float]] = field(default_factory=dict)
    account: dict[str, object] = field(default_factory=dict)     # the backend's run account, if it keeps one

    def count(self, row: GenerationRow, records: int | None = None) -> None:
        """Add one request's outcome to the account, overall and for its strategy and model
        (``records``: what it yielded, when not one record per successful reply)."""
        ok = row.status == "ok"
        if ok:
            self.succeeded += 1
            self.records += 1 if records is None else records
        else:
            self.failed += 1
            self.errors[row.error.split(":")[0]] += 1
        self.tokens_in += row.tokens_in
        self.tokens_out += row.tokens_out
        self.seconds += row.seconds
        key = f"{row.strategy} / {row.backend} / {row.model}"
        part = self.by_strategy.setdefault(key, {"requests": 0, "succeeded": 0, "failed": 0, "tokens_in": 0,
                                                 "tokens_out": 0, "seconds": 0.0})
        part["requests"] += 1
        part["succeeded" if ok else "failed"] += 1
        part["tokens_in"] += row.tokens_in
        part["tokens_out"] += row.tokens_out
        part["seconds"] = round(part["seconds"] + row.seconds, 3)


def plan_requests(store: Store, cfg: Config, llm: LLM, round: int) -> list[PlannedRequest]:
    """The round's requests, the same every time for the same store, config and round.

    Seeds come from gold *train* records only: held-out real data never reaches a prompt.
    A strategy that learns from review (``feedback.v1``) may add drafts reviewers accepted
    in earlier rounds, read from the store once here (:func:`accepted_drafts`); each
    strategy's :meth:`~goldloop.generate.Strategy.choose_seeds` makes the final choice. Each
    strategy picks the labels it drafts for (``targeted.v1``: those in ``[generate]
    targets``), and the domain rules go into every prompt.
    """
    train = store.records(origin="gold", split="train")
    if not train:
        raise StageError("no gold training data yet; run `goldloop ingest FILE` first")
    by_label: dict[str, list[Record]] = {}
    red = set(cfg.policy.gold_only_labels)          # their training rows must be real: no drafts for them
    for rec in train:
        if rec.label not in red:
            by_label.setdefault(rec.label, []).append(rec)
    g = cfg.generate
    if "targeted.v1" in g.strategies and red & set(g.targets):
        raise ConfigError(f"goldloop.toml: [generate] targets names {', '.join(map(repr, sorted(red & set(g.targets))))}, "
                          "which [policy] gold_only_labels keeps free of drafts; aim targeted.v1 at other labels")
    rules = Rules.from_config(g)
    strategies = {name: get_strategy(name) for name in g.strategies}
    accepted = accepted_drafts(store, round) if any(s.reads_accepted for s in strategies.values()) else {}
    planned: list[PlannedRequest] = []
    for strategy_name, strategy in strategies.items():
        for label, weakness in strategy.plan_labels(sorted(by_label), g).items():
            pool = by_label[label]
            rng = random.Random(content_hash(cfg.project.seed, round, strategy.name, label))
            for position in range(g.per_label):
                gold = rng.sample(pool, min(g.seeds_per_prompt, len(pool)))
                seeds = strategy.choose_seeds(rng, gold, accepted.get(label, []), g.seeds_per_prompt)
                planned.append(build_request(cfg, llm, strategy_name, label, seeds, round, position,
                                             weakness=weakness, rules=rules))
    return planned


def build_request(cfg: Config, llm: LLM, strategy_name: str, label: str, seeds: list[Record], round: int,
                  position: int, weakness: str = "", rules: Rules | None = None) -> PlannedRequest:
    """One request of ``strategy_name`` for ``label`` from the given gold-train seeds.

    The key covers everything that shapes the reply (strategy, template, prompt, sampling,
    model, round, position), so the same request planned twice is sent once. The ``[llm]``
    sampling controls join the key only when some are not neutral: with all of them neutral
    the request is the one sent before they existed, and so is its key.
    """
    g = cfg.generate
    mode = cfg.llm.mode
    strategy = get_strategy(strategy_name)
    template_hash = strategy.template_hash(mode)
    prompt = strategy.render(mode, label, seeds, item_name=g.item_name,
                             description=g.label_descriptions.get(label, ""), seed_words=g.seed_words,
                             rules=rules if rules is not None else Rules.from_config(g), weakness=weakness)
    controls = sampling_controls(cfg.llm)
    key = content_hash(strategy.name, template_hash, prompt.text, prompt.messages, llm.backend, llm.model,
                       g.temperature, g.top_p, g.max_tokens, round, position,
                       cfg.llm.structured_output and mode == "chat", *([controls] if controls else []))
    structured = cfg.llm.structured_output and prompt.messages is not None
    request = CompletionRequest(key=key, prompt=prompt.text, messages=prompt.messages, max_tokens=g.max_tokens,
                                temperature=g.temperature, top_p=g.top_p, stop=prompt.stop,
                                seed=int(key[:8], 16) & 0x7FFFFFFF,
                                json_schema=strategy.json_schema if structured else None,
                                controls=tuple(controls.items()))
    return PlannedRequest(request, strategy.name, label, tuple(s.id for s in seeds), template_hash)


def generation_row(req: CompletionRequest, result: CompletionResult, llm: LLM, round: int, strategy: str, label: str,
                   error: str | None = None) -> GenerationRow:
    """The stored account of one request and its reply (``error``: what the reply lacked, when the
    request itself went through)."""
    prompt_text = req.prompt if req.prompt is not None else "\n\n".join(m["content"] for m in req.messages or ())
    return GenerationRow(
        request_key=req.key, round=round, strategy=strategy, label=label, prompt=prompt_text,
        status="ok" if result.ok else "failed", reply=result.text or "", error=error or result.error or "",
        attempts=result.attempts, tokens_in=result.tokens_in, tokens_out=result.tokens_out, seconds=result.seconds,
        backend=llm.backend, model=llm.model)


class ReplyBatch:
    """Replies waiting to be committed: ``[executor] reply_batch`` to a transaction, or fewer once
    the first has waited ``reply_batch_seconds``; whatever waits is committed on leaving the block,
    an error or Ctrl-C included."""

    def __init__(self, store: Store, cfg: Config) -> None:
        self.store, self.size, self.seconds = store, cfg.executor.reply_batch, cfg.executor.reply_batch_seconds
        self.items: list[tuple[GenerationRow, list[Record]]] = []
        self.since = 0.0

    def add(self, row: GenerationRow, records: list[Record]) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((row, records))
        if len(self.items) >= self.size or time.monotonic() - self.since >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.items:
            self.store.add_generations(self.items)
            self.items = []

    def __enter__(self) -> "ReplyBatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def generate(store: Store, cfg: Config, llm: LLM, round: int, show_progress: bool = True,
             planned: list[PlannedRequest] | None = None) -> GenerateReport:
    """Send every planned request of ``round`` that has no stored reply yet.

    ``planned``: the requests to send (the loop's plan); by default those of ``[generate]``.
    """
    require_classify(cfg.project.task, "generation")
    planned = plan_requests(store, cfg, llm, round) if planned is None else planned
    done = store.finished_requests(p.request.key for p in planned)
    todo = [p for p in planned if p.request.key not in done]
    report = GenerateReport(round=round, planned=len(planned), already_done=len(planned) - len(todo))
    by_key = {p.request.key: p for p in todo}
    store.log_event("generate.start", {"round": round, "planned": len(planned), "todo": len(todo),
                                       "backend": llm.backend, "model": llm.model})
    with graceful_stop(llm.stop) as stop, progress_bar(f"round {round}: generating", len(todo),
                                                      show_progress) as advance, ReplyBatch(store, cfg) as batch:
        # Each reply is committed (with [executor] reply_batch = 1) before the next is asked for:
        # only then may the backend send another request in its place, so a kill loses at most one
        # window of paid replies; a bigger batch adds at most itself to that.
        for result in llm.complete([p.request for p in todo]):
            plan = by_key[result.key]
            req = plan.request
            records: list[Record] = []
            if result.ok:
                strategy = get_strategy(plan.strategy)
                text = normalize_text(strategy.parse(result.text or "", cfg.generate.item_name,
                                                     result.extra.get("parsed")), cfg.ingest.normalize)
                prov = Provenance(parents=plan.seeds, strategy=plan.strategy, backend=llm.backend,
                                  model=llm.model, params=req.sampling(), template_hash=plan.template_hash,
                                  request_key=req.key, round=round, source="generate", created_at=now())
                records.append(Record.synthetic(text, plan.label, prov))
            row = generation_row(req, result, llm, round, plan.strategy, plan.label)
            batch.add(row, records)
            report.count(row)
            advance(1, note=(f"stopping on {stop.signal}: saving the replies in flight (again to abandon them)"
                             if stop.signal else
                             f"{report.tokens_in} tokens in, {report.tokens_out} out, {report.failed} failed"))
    account = getattr(llm, "account", None)
    if account is not None:
        report.account = account.to_json()
    if stop.signal:
        not_sent = len(todo) - report.succeeded - report.failed
        store.log_event("generate.stopped", {"round": round, "signal": stop.signal, "succeeded": report.succeeded,
                                             "failed": report.failed, "not_sent": not_sent,
                                             "account": report.account})
        raise Interrupted(f"round {round}: stopped by {stop.signal} after saving every reply in flight: "
                          f"{report.succeeded} succeeded and {report.failed} failed in this run, {not_sent} "
                          f"request(s) not sent. Run the same command again to continue.")
    store.log_event("generate.done", {"round": round, "succeeded": report.succeeded, "failed": report.failed,
                                      "tokens_in": report.tokens_in, "tokens_out": report.tokens_out,
                                      "by_strategy": report.by_strategy, "account": report.account})
    return report


def stored_summary(store: Store, round: int) -> GenerateReport:
    """The round's generation account as stored, over every run that worked on it."""
    rows = store.generations(round=round)
    report = GenerateReport(round=round, planned=len(rows))
    for row in rows:
        report.count(row)
    return report

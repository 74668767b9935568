"""Drafting prompt → response pairs (the `generate` task) around gold pairs.

Each request shows a few gold-train pairs (drawn at random per request, so the examples
rotate) and asks for one new pair: a new prompt and its response, in the same form. The
strategies differ in what they ask for (``pair_paraphrase.v1``: another pair of the same kind,
``pair_harder.v1``: a harder one, ``pair_edge_case.v1``: a rare but valid situation); the
domain rules and red lines of ``[generate]`` apply to both sides. With A-vs-B review on,
``pair_response.v1`` then drafts a second response to each drafted prompt.

Gold text is multi-line (code, lists), so it is shown as blocks, not one-liners. It stays data:
a line of it that starts with ``###`` is shown with two, so it cannot open a new prompt or
response, and ``<data>`` markers in it are neutralised as everywhere else. A reply whose
response marker is missing or whose prompt or response is empty yields no record (logged with
its raw text). Replies are committed one by one, keyed by content, as for `classify` drafts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import Config
from ..errors import Interrupted, StageError
from ..interrupts import graceful_stop
from ..llm import LLM, CompletionRequest, sampling_controls
from ..progress import progress_bar
from ..records import SOURCE_KEYS, SUGGEST, Provenance, Record, content_hash, normalize_text, now, pair_normalize_mode
from ..store import Store
from ._runner import GenerateReport, ReplyBatch, generation_row
from ._strategies import _ENV, Prompt, Rules, Strategy, _templates

_HEADING = re.compile(r"(?m)^(\s*)#{3,}")
_RESPONSE = re.compile(r"(?m)^\s*#{2,}\s*Response\s*:?\s*$")
_NEXT = re.compile(r"(?m)^\s*#{2,}\s*(?:Prompt|Response)\b.*$")


def block(value: object) -> str:
    """Multi-line data for a pair prompt: line breaks kept, no line able to start a marker."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    text = _HEADING.sub(lambda m: m.group(1) + "##", text)
    return text.replace("<data>", "\u2039data\u203a").replace("</data>", "\u2039/data\u203a")


_ENV.filters["block"] = block


class PairStrategy(Strategy):
    """A strategy that drafts whole pairs from gold pairs."""

    json_schema: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {"prompt": {"type": "string", "minLength": 1},
                                         "response": {"type": "string", "minLength": 1}},
        "required": ["prompt", "response"], "additionalProperties": False}

    def render_pairs(self, mode: str, seeds: Sequence[Record], *, item_name: str, rules: Rules) -> Prompt:
        examples = [{"prompt": s.text, "response": s.response} for s in seeds]
        context = {"examples": examples, "item_name": item_name, "rules": rules, "label": "", "description": ""}
        if mode == "completion":
            text = _ENV.get_template(self.templates["completion"]).render(context) + "\n"
            return Prompt(text=text, messages=None, stop=("### Prompt", "\n\n\n\n"))
        system = _ENV.get_template(self.templates["system"]).render(context)
        user = _ENV.get_template(self.templates["user"]).render(context)
        return Prompt(text=None, messages=({"role": "system", "content": system},
                                           {"role": "user", "content": user}), stop=())

    def parse_pair(self, reply: str, parsed: Any = None) -> tuple[str, str] | None:
        """(prompt, response) from a reply, or None when it holds no complete pair."""
        if isinstance(parsed, dict) and isinstance(parsed.get("prompt"), str) and isinstance(parsed.get("response"), str):
            return parsed["prompt"].strip(), parsed["response"].strip()
        text = reply.replace("\r\n", "\n")
        text = re.sub(r"^\s*#{2,}\s*Prompt\s*:?\s*\n", "", text)       # a chat reply repeats the first marker
        marker = _RESPONSE.search(text)
        if marker is None:
            return None
        prompt, rest = text[:marker.start()].strip("\n"), text[marker.end():]
        after = _NEXT.search(rest)
        response = (rest[:after.start()] if after else rest).strip("\n")
        if not prompt.strip() or not response.strip():
            return None
        return prompt, response


class PairParaphrase(PairStrategy):
    """Another pair of the same kind as a few gold pairs."""

    name = "pair_paraphrase.v1"
    inputs = ("gold-train pairs: prompt and response", "[generate] rules_must, rules_must_not, vocabulary, red_lines")
    outputs = ("prompt", "response")
    templates = _templates(name)


class PairHarder(PairStrategy):
    """A harder pair: a longer, less common or more ambiguous prompt, still answered well."""

    name = "pair_harder.v1"
    inputs = PairParaphrase.inputs
    outputs = ("prompt", "response")
    templates = _templates(name)


class PairEdgeCase(PairStrategy):
    """A rare but valid situation the task must still handle."""

    name = "pair_edge_case.v1"
    inputs = PairParaphrase.inputs
    outputs = ("prompt", "response")
    templates = _templates(name)


class PairTargeted(PairStrategy):
    """New pairs drafted from the gold pairs nearest the held-out pairs the kept model does worst on.

    Its seeds come from ``focus`` (gold-train pairs chosen by :func:`weak_spot_seeds`): held-out
    figures steer which gold pairs are shown, and no held-out text ever reaches a prompt."""

    name = "pair_targeted.v1"
    inputs = ("gold-train pairs nearest the held-out pairs with the highest reference NLL under the kept model",
              "[generate] rules_must, rules_must_not, vocabulary, red_lines")
    outputs = ("prompt", "response")
    templates = _templates("pair_paraphrase.v1")


class PairResponse(PairStrategy):
    """Another response to a drafted prompt, so a reviewer can prefer one of two (A-vs-B)."""

    name = "pair_response.v1"
    inputs = ("a drafted pair's prompt", "the gold-train pairs it was drafted from",
              "[generate] rules_must, rules_must_not, vocabulary, red_lines")
    outputs = ("response",)
    templates = _templates(name)
    json_schema: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {"response": {"type": "string", "minLength": 1}},
        "required": ["response"], "additionalProperties": False}

    def render_response(self, mode: str, seeds: Sequence[Record], prompt: str, *, item_name: str,
                        rules: Rules) -> Prompt:
        examples = [{"prompt": s.text, "response": s.response} for s in seeds]
        context = {"examples": examples, "prompt": prompt, "item_name": item_name, "rules": rules, "label": "",
                   "description": ""}
        if mode == "completion":
            text = _ENV.get_template(self.templates["completion"]).render(context) + "\n"
            return Prompt(text=text, messages=None, stop=("### Prompt", "\n\n\n\n"))
        return Prompt(text=None, messages=({"role": "system", "content": _ENV.get_template(self.templates["system"]).render(context)},
                                           {"role": "user", "content": _ENV.get_template(self.templates["user"]).render(context)}),
                      stop=())

    def parse_response(self, reply: str, parsed: Any = None) -> str | None:
        if isinstance(parsed, dict) and isinstance(parsed.get("response"), str):
            return parsed["response"].strip() or None
        text = _RESPONSE.sub("", reply.replace("\r\n", "\n"), count=1) if _RESPONSE.match(reply) else reply
        after = _NEXT.search(text)
        text = (text[:after.start()] if after else text).strip("\n")
        return text if text.strip() else None


PAIR_STRATEGIES: dict[str, type[PairStrategy]] = {c.name: c for c in (PairParaphrase, PairHarder, PairEdgeCase,
                                                                         PairTargeted)}
#: The strategies a round drafts with when no weak spots are known yet.
DEFAULT_PAIR_STRATEGIES = ("pair_paraphrase.v1", "pair_harder.v1", "pair_edge_case.v1")


@dataclass(frozen=True)
class PlannedPair:
    request: CompletionRequest
    strategy: str
    seeds: tuple[str, ...]
    template_hash: str
    answers: tuple[str, str] | None = None      # (draft id, its prompt): a second response to a drafted prompt
    suggests: Record | None = None              # a pool prompt: the reply is its suggested response


def _request(cfg: Config, llm: LLM, strategy: PairStrategy, prompt: Prompt, template_hash: str,
             *key_parts: Any) -> CompletionRequest:
    g, mode = cfg.generate, cfg.llm.mode
    controls = sampling_controls(cfg.llm)
    key = content_hash(strategy.name, template_hash, prompt.text, prompt.messages, llm.backend, llm.model,
                       g.temperature, g.top_p, g.pair_max_tokens, *key_parts,
                       cfg.llm.structured_output and mode == "chat", *([controls] if controls else []))
    structured = cfg.llm.structured_output and prompt.messages is not None
    return CompletionRequest(key=key, prompt=prompt.text, messages=prompt.messages, max_tokens=g.pair_max_tokens,
                             temperature=g.temperature, top_p=g.top_p, stop=prompt.stop,
                             seed=int(key[:8], 16) & 0x7FFFFFFF,
                             json_schema=strategy.json_schema if structured else None,
                             controls=tuple(controls.items()))


#: Characters per token assumed when a prompt must fit a context window: a low estimate (code and
#: docstrings run 3.0-4.2 with the default model), so the estimate errs toward a shorter prompt.
CHARS_PER_TOKEN = 3.0


def prompt_room(cfg: Config) -> int | None:
    """Tokens a pair prompt may take, or None when the context is not known: the embedded model's
    ``[llm] context_per_sequence`` less the ``[generate] pair_max_tokens`` its reply may use."""
    if cfg.llm.backend != "embedded":
        return None
    return max(0, cfg.llm.context_per_sequence - cfg.generate.pair_max_tokens)


def fit_seeds(seeds: Sequence[Record], render: Any, room: int | None) -> tuple[list[Record], Prompt]:
    """The seeds, longest dropped first (one is always kept), until ``render(seeds)`` fits in ``room``
    tokens, and that prompt. A prompt that fills the context leaves the reply no room to finish a
    pair: it comes back cut off or refused."""
    kept = list(seeds)
    prompt = render(kept)
    while room is not None and len(kept) > 1 and _tokens(prompt) > room:
        kept.remove(max(kept, key=lambda r: len(r.text) + len(r.response)))
        prompt = render(kept)
    return kept, prompt


def _tokens(prompt: Prompt) -> float:
    chars = len(prompt.text or "") + sum(len(m["content"]) for m in prompt.messages or ())
    return chars / CHARS_PER_TOKEN


def plan_pair_requests(store: Store, cfg: Config, llm: LLM, round: int, per_strategy: int,
                       strategies: Sequence[str] = DEFAULT_PAIR_STRATEGIES,
                       focus: Sequence[str] = ()) -> list[PlannedPair]:
    """``per_strategy`` requests of each strategy, each showing ``[generate] seeds_per_prompt`` gold-train
    pairs drawn at random for it (held-out pairs never reach a prompt; the longest are left out when
    the prompt would not leave the reply its room, see :func:`fit_seeds`); the same every time.
    ``focus``: ids of gold-train pairs ``pair_targeted.v1`` draws its seeds from (it is left out
    without them)."""
    train = [r for r in store.records(origin="gold", split="train") if r.is_pair]
    focused = [r for r in train if r.id in set(focus)]
    strategies = [s for s in strategies if s != PairTargeted.name or focused]
    if not train:
        raise StageError("no gold training pairs yet; run `goldloop ingest FILE` in a generate project first")
    unknown = sorted(set(strategies) - set(PAIR_STRATEGIES))
    if unknown:
        raise StageError(f"unknown pair strategies {', '.join(unknown)}; known: {', '.join(sorted(PAIR_STRATEGIES))}")
    g, mode = cfg.generate, cfg.llm.mode
    rules = Rules.from_config(g)
    room = prompt_room(cfg)
    planned = []
    for name in strategies:
        strategy = PAIR_STRATEGIES[name]()
        template_hash = strategy.template_hash(mode)
        rng = random.Random(content_hash(cfg.project.seed, round, name, "pairs"))
        pool = focused if name == PairTargeted.name else train
        for position in range(per_strategy):
            seeds, prompt = fit_seeds(rng.sample(pool, min(g.seeds_per_prompt, len(pool))),
                                      lambda chosen: strategy.render_pairs(mode, chosen, item_name=g.item_name,
                                                                           rules=rules), room)
            request = _request(cfg, llm, strategy, prompt, template_hash, round, position)
            planned.append(PlannedPair(request, name, tuple(s.id for s in seeds), template_hash))
    return planned


def plan_second_responses(store: Store, cfg: Config, llm: LLM, round: int, per_prompt: int = 1) -> list[PlannedPair]:
    """``per_prompt`` more responses to each prompt the round drafted (shown with the gold pairs it
    was drafted from), so A-vs-B review has two responses to one prompt to choose between."""
    strategy = PairResponse()
    mode = cfg.llm.mode
    template_hash = strategy.template_hash(mode)
    rules = Rules.from_config(cfg.generate)
    drafts = [r for r in store.records(origin="synthetic", round=round)
              if r.is_pair and r.provenance.strategy in PAIR_STRATEGIES]
    seeds_of = {r.id: r for r in store.records(ids=sorted({p for d in drafts for p in d.provenance.parents}))}
    room = prompt_room(cfg)
    planned = []
    for draft in sorted(drafts, key=lambda r: r.id):
        seeds, prompt = fit_seeds([seeds_of[p] for p in draft.provenance.parents if p in seeds_of],
                                  lambda chosen: strategy.render_response(mode, chosen, draft.text,
                                                                          item_name=cfg.generate.item_name,
                                                                          rules=rules), room)
        for k in range(per_prompt):
            request = _request(cfg, llm, strategy, prompt, template_hash, round, draft.id, k)
            planned.append(PlannedPair(request, strategy.name, (draft.id, *(s.id for s in seeds)), template_hash,
                                       answers=(draft.id, draft.text)))
    return planned


def generate_pairs(store: Store, cfg: Config, llm: LLM, round: int, planned: Sequence[PlannedPair],
                   show_progress: bool = True) -> GenerateReport:
    """Send every planned pair request without a stored reply; commit each reply with its draft."""
    done = store.finished_requests(p.request.key for p in planned)
    todo = [p for p in planned if p.request.key not in done]
    report = GenerateReport(round=round, planned=len(planned), already_done=len(planned) - len(todo))
    by_key = {p.request.key: p for p in todo}
    mode = pair_normalize_mode(cfg.ingest.normalize)
    store.log_event("generate.start", {"round": round, "planned": len(planned), "todo": len(todo), "task": "generate",
                                       "backend": llm.backend, "model": llm.model})
    with graceful_stop(llm.stop) as stop, progress_bar(f"round {round}: drafting pairs", len(todo),
                                                      show_progress) as advance, ReplyBatch(store, cfg) as batch:
        for result in llm.complete([p.request for p in todo]):
            plan = by_key[result.key]
            req = plan.request
            records: list[Record] = []
            error = result.error
            if result.ok:
                if plan.suggests is not None or plan.answers is not None:     # a response to a given prompt
                    answer = PairResponse().parse_response(result.text or "", result.extra.get("parsed"))
                    given = plan.suggests.text if plan.suggests is not None else plan.answers[1]  # type: ignore[index]
                    pair = (given, answer) if answer else None
                else:
                    pair = PAIR_STRATEGIES[plan.strategy]().parse_pair(result.text or "", result.extra.get("parsed"))
                prompt, response = (normalize_text(pair[0], mode), normalize_text(pair[1], mode)) if pair else ("", "")
                if plan.suggests is not None and response:
                    parent = plan.suggests
                    prov = Provenance(parents=(parent.id, *plan.seeds), strategy=SUGGEST, backend=llm.backend,
                                      model=llm.model, params={**req.sampling(), "template": PairResponse.name,
                                                               **{k: parent.provenance.params[k] for k in SOURCE_KEYS
                                                                  if k in parent.provenance.params}},
                                      template_hash=plan.template_hash, request_key=req.key, round=round,
                                      source=f"suggest: response to pool prompt {parent.id}", created_at=now())
                    records.append(Record.suggested_pair(parent, response, prov))
                elif prompt and response:
                    # a second response's prompt is its parent draft's; the response is this request's
                    source = f"generate: response to the prompt of {plan.answers[0]}" if plan.answers else "generate"
                    prov = Provenance(parents=plan.seeds, strategy=plan.strategy, backend=llm.backend, model=llm.model,
                                      params=req.sampling(), template_hash=plan.template_hash, request_key=req.key,
                                      round=round, source=source, created_at=now())
                    records.append(Record.synthetic_pair(prompt, response, prov))
                else:
                    error = ("unparsable: the reply holds no response" if plan.suggests or plan.answers
                             else "unparsable: the reply holds no complete prompt and response")
            row = generation_row(req, result, llm, round, plan.strategy, "", error)
            batch.add(row, records)
            report.count(row, records=len(records))
            advance(1, note=f"{report.records} pairs, {report.failed} failed")
    if stop.signal:
        raise Interrupted(f"round {round}: stopped by {stop.signal} after saving every reply in flight; run the "
                          "same command again to continue")
    store.log_event("generate.done", {"round": round, "succeeded": report.succeeded, "failed": report.failed,
                                      "records": report.records, "task": "generate"})
    return report


def weak_spot_seeds(store: Store, embedder: Any, heldout_nll: dict[str, float], share: float = 0.2,
                    per_spot: int = 3) -> list[str]:
    """Ids of the gold-train pairs nearest (prompt embeddings) the held-out pairs whose reference NLL
    under the kept model is highest (the worst ``share`` of them): where the next drafts should aim."""
    heldout = [r for r in store.records(origin="gold", split="heldout") if r.is_pair and r.id in heldout_nll]
    train = [r for r in store.records(origin="gold", split="train") if r.is_pair]
    if not heldout or not train:
        return []
    worst = sorted(heldout, key=lambda r: -heldout_nll[r.id])[:max(1, round(len(heldout) * share))]
    import numpy as np

    def unit(x: Any) -> Any:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(embedder.embed([r.text for r in worst])) @ unit(embedder.embed([r.text for r in train])).T
    chosen: dict[str, None] = {}
    for row in sims:
        for j in np.argsort(-row)[:per_spot]:
            chosen[train[int(j)].id] = None
    return list(chosen)


def draft_round_pairs(store: Store, cfg: Config, llm: LLM, round: int, per_strategy: int,
                      show_progress: bool = True, focus: Sequence[str] = ()) -> GenerateReport:
    """A round's drafting for the generate task: new pairs (``pair_targeted.v1`` too, given
    ``focus``), then, with A-vs-B review on (``[serve] pairs_per_label`` > 0), a second response
    to each drafted prompt."""
    strategies = (*DEFAULT_PAIR_STRATEGIES, PairTargeted.name) if focus else DEFAULT_PAIR_STRATEGIES
    report = generate_pairs(store, cfg, llm, round, plan_pair_requests(store, cfg, llm, round, per_strategy,
                                                                       strategies, focus), show_progress)
    if cfg.serve.pairs_per_label > 0:
        more = generate_pairs(store, cfg, llm, round, plan_second_responses(store, cfg, llm, round), show_progress)
        for name in ("planned", "already_done", "succeeded", "failed", "records", "tokens_in", "tokens_out"):
            setattr(report, name, getattr(report, name) + getattr(more, name))
        report.seconds += more.seconds
        report.errors.update(more.errors)
        report.by_strategy.update(more.by_strategy)
    return report

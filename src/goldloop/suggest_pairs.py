"""The `suggest` stage of the `generate` task: real prompts from the pool, each with a response the
drafting model writes, for a reviewer to accept, fix or reject.

A team usually has many real prompts (tickets, claims, undocumented functions) and few written
responses. Pool prompts (``goldloop ingest FILE --split pool``) are the `generate` counterpart of
unlabelled pool records: the prompt is real, the response is what a reviewer supplies, starting
from a draft.

- **Open pool.** Pool prompts whose suggestion no reviewer answered in an earlier round, less
  those that repeat a held-out prompt or response (exactly, as a MinHash near-duplicate at
  ``[filter] near_dup_threshold``, or by selection-embedding cosine at ``[suggest]
  heldout_similarity``): held-out text never reaches a reviewer or a training set.
- **Picking.** The budget goes to typical prompts: one per k-means cluster of the open pool's
  selection embeddings (``[suggest] selection_embedder``), the prompt nearest each cluster's
  centre, biggest clusters first (TypiClust, Hacohen et al. 2022). Held-out data does not steer
  which prompts are picked: a prompt picked for being near a held-out one would teach its answer.
  Pools over ``[executor] pool_sample`` prompts are clustered on a seeded sample of that size.
- **Drafting.** Each picked prompt is shown with the ``[generate] seeds_per_prompt`` gold-train
  pairs whose prompts are nearest it, the nearest last (nearest-neighbour examples: Liu et al.
  2022, "What Makes Good In-Context Examples for GPT-3?"), through ``pair_response.v1`` with the
  domain rules and red lines of ``[generate]``. Replies are committed one by one, keyed by content;
  a killed run resumes where it stopped, and a rerun in the same round picks the same prompts.
- **The model as responder.** With ``[suggest] responder = "model"`` the model the project trains
  writes the suggestions instead: ``[trl] base_model`` with the adapter of the kept round (else the
  gold-only one), shown each pool prompt alone, as its training rows show prompts, and answering
  greedily (:class:`goldloop.llm.LocalLM`). Its texts are what the current model would say: a
  reviewer who accepts one confirms the model, one who fixes it teaches it its own mistake.
- **Review.** Accepting trains the drafted response (SFT, KTO+), which stays machine text: it
  counts toward the synthetic share. Rewriting the response makes a real row (the reviewer's
  text; SFT, and a DPO pair against the draft). Rejecting marks the prompt unusable: it is not
  offered again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .errors import StageError
from .generate import PairResponse, PlannedPair, generate_pairs
from .generate._pairs import _request, fit_seeds, prompt_room
from .generate._strategies import Rules
from .llm import LLM, CompletionRequest
from .records import SUGGEST, Record, content_hash
from .review import review_states, suggestions
from .store import Store
from .suggest import HeldoutCheck, selection_embedder, typical_picks


@dataclass
class PairSuggestReport:
    """What one round's suggest stage of a generate project found, picked and drafted."""

    round: int
    pool: int = 0                 # pool prompts in the store
    answered: int = 0             # answered by a reviewer in an earlier round (trained on, or unusable)
    heldout_excluded: int = 0     # repeat a held-out prompt or response: never shown
    eligible: int = 0
    picked: int = 0
    drafted: int = 0              # picked prompts with a suggested response
    failed: int = 0               # requests that gave no response (run the stage again to retry)
    already: bool = False         # every pick had its response from an earlier run
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "pool": self.pool, "answered": self.answered,
                "heldout_excluded": self.heldout_excluded, "eligible": self.eligible, "picked": self.picked,
                "drafted": self.drafted, "failed": self.failed, "already": self.already, "seconds": self.seconds}


def answered_before(store: Store, number: int) -> set[str]:
    """Pool prompt ids whose suggestion a reviewer accepted, rewrote or rejected before round ``number``."""
    states = review_states(store.decisions())
    return {r.provenance.parents[0] for r in suggestions(store) if r.is_pair and r.round < number
            and r.id in states and states[r.id].action in ("accept", "edit", "reject")}


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pick_prompts(vecs: np.ndarray, budget: int, cfg: Config) -> list[int]:
    """Rows of ``vecs`` (the open pool) to draft responses for: one typical prompt per k-means cluster."""
    rows = np.arange(len(vecs))
    limit = cfg.executor.pool_sample
    if limit and len(rows) > limit:
        rows = np.sort(np.random.default_rng(cfg.project.seed).choice(rows, size=limit, replace=False))
    return [int(rows[i]) for i, _ in typical_picks(vecs[rows], min(budget, len(rows)), cfg.project.seed)]


def nearest_seeds(prompt_vec: np.ndarray, gold_vecs: np.ndarray, gold: list[Record], k: int) -> list[Record]:
    """The ``k`` gold pairs whose prompts are nearest, ordered so the nearest comes last."""
    sims = gold_vecs @ prompt_vec
    top = np.argsort(-sims, kind="stable")[:k]
    return [gold[i] for i in reversed(top)]


def plan_suggestions(cfg: Config, llm: LLM, number: int, picked: list[Record], picked_vecs: np.ndarray,
                     gold: list[Record], gold_vecs: np.ndarray) -> list[PlannedPair]:
    """One ``pair_response.v1`` request per picked pool prompt, shown with its nearest gold pairs."""
    strategy, mode = PairResponse(), cfg.llm.mode
    template_hash = strategy.template_hash(mode)
    rules = Rules.from_config(cfg.generate)
    room = prompt_room(cfg)
    planned = []
    for rec, vec in zip(picked, picked_vecs):
        near = nearest_seeds(vec, gold_vecs, gold, cfg.generate.seeds_per_prompt)
        seeds, prompt = fit_seeds(near, lambda chosen, text=rec.text: strategy.render_response(
            mode, chosen, text, item_name=cfg.generate.item_name, rules=rules), room)
        request = _request(cfg, llm, strategy, prompt, template_hash, number, "suggest", rec.id)
        planned.append(PlannedPair(request, SUGGEST, tuple(s.id for s in seeds), template_hash, suggests=rec))
    return planned


#: What the model responder is shown, named in every suggestion's provenance: the pool prompt alone.
MODEL_RESPONDER = "model_responder.v1"


def plan_model_suggestions(cfg: Config, llm: LLM, number: int, picked: list[Record]) -> list[PlannedPair]:
    """One chat request per picked pool prompt, the prompt as the trained model saw its training rows
    (system, context and prompt; :func:`goldloop.evaluate_pairs.prompt_messages`), answered greedily."""
    from .evaluate_pairs import prompt_messages

    template_hash = hashlib.sha256(MODEL_RESPONDER.encode()).hexdigest()[:16]
    planned = []
    for rec in picked:
        messages = tuple(prompt_messages(rec))
        key = content_hash(MODEL_RESPONDER, messages, llm.backend, llm.model, cfg.generate.pair_max_tokens,
                           number, "suggest", rec.id)
        request = CompletionRequest(key=key, messages=messages, max_tokens=cfg.generate.pair_max_tokens,
                                    temperature=0.0, top_p=1.0, seed=int(key[:8], 16) & 0x7FFFFFFF)
        planned.append(PlannedPair(request, SUGGEST, (), template_hash, suggests=rec))
    return planned


def trained_adapter(store: Store, project_dir: str | Path) -> Path:
    """The adapter of the model the project trains: the kept loop round's, else the gold-only one
    (the loop's, else the newest `goldloop evaluate` trained)."""
    from .loop import kept_round

    adapters = Path(project_dir) / ".goldloop" / "adapters"
    kept = kept_round(store)
    if kept is not None:
        folder = adapters / f"round-{kept.number}"
        if not (folder / "adapter_config.json").is_file():
            raise StageError(f"round {kept.number} is the kept round, but its adapter is missing from {folder}: "
                             "run `goldloop loop` again, or set [suggest] responder = \"llm\"")
        return folder
    found = [adapters / "gold-only"] + sorted(adapters.glob("round-*/gold_only"),
                                              key=lambda p: int(p.parent.name.split("-")[1]), reverse=True)
    for folder in found:
        if (folder / "adapter_config.json").is_file():
            return folder
    raise StageError("[suggest] responder = \"model\" drafts with the model this project trains, and none is "
                     "trained yet: run `goldloop loop` or `goldloop evaluate` first, or set [suggest] responder = "
                     "\"llm\"")


def responder_llm(cfg: Config, store: Store, project_dir: str | Path, threads: int = 0) -> LLM | None:
    """The model that writes suggestions when ``[suggest] responder = "model"`` (None: the ``[llm]`` one)."""
    if cfg.suggest.responder != "model":
        return None
    from .evaluate_pairs import base_model
    from .llm import LocalLM

    return LocalLM(base_model(cfg), trained_adapter(store, project_dir), threads=threads)


def suggest_pairs(store: Store, cfg: Config, number: int, budget: int, llm: LLM, trainer: Any,
                  show_progress: bool = False) -> PairSuggestReport:
    """Pick up to ``budget`` open pool prompts of round ``number`` and draft a response to each (see
    the module's text); the suggestions wait in the round's review queue."""
    if cfg.project.task != "generate":
        raise StageError("suggest_pairs is the generate task's suggest stage; classify projects use goldloop.suggest")
    report = PairSuggestReport(round=number)
    started = time.monotonic()
    pool = [r for page in store.iter_records(origin="pool", split="pool") for r in page if not r.is_pair]
    report.pool = len(pool)
    gold = [r for r in store.records(origin="gold", split="train") if r.is_pair]
    if not gold:
        raise StageError("no gold training pairs yet; run `goldloop ingest FILE` in a generate project first")
    if not pool:
        raise StageError("the pool holds no prompts; ingest real prompts with `goldloop ingest FILE --split pool`")
    done = answered_before(store, number)
    open_pool = [r for r in pool if r.id not in done]
    report.answered = len(pool) - len(open_pool)
    embed = selection_embedder(cfg, trainer)
    vecs = _unit(embed.embed([r.text for r in open_pool])) if open_pool else np.zeros((0, 1))
    heldout = [r for r in store.records(origin="gold", split="heldout") if r.is_pair]
    if heldout and open_pool:
        check = HeldoutCheck(cfg, [t for r in heldout for t in (r.text, r.response)], embed)
        flags = check.duplicates([r.text for r in open_pool], vecs)
        report.heldout_excluded = int(flags.sum())
        open_pool = [r for r, flag in zip(open_pool, flags) if not flag]
        vecs = vecs[~flags]
    report.eligible = len(open_pool)
    report.seconds["pick"] = round(time.monotonic() - started, 2)
    rows = pick_prompts(vecs, budget, cfg) if open_pool else []
    report.picked = len(rows)
    if not rows:
        store.log_event("suggest", {"task": "generate", **report.to_json()})
        return report
    mark = time.monotonic()
    if cfg.suggest.responder == "model":
        planned = plan_model_suggestions(cfg, llm, number, [open_pool[i] for i in rows])
    else:
        gold_vecs = _unit(embed.embed([r.text for r in gold]))
        planned = plan_suggestions(cfg, llm, number, [open_pool[i] for i in rows], vecs[rows], gold, gold_vecs)
    gen = generate_pairs(store, cfg, llm, number, planned, show_progress=show_progress)
    report.already = gen.already_done == len(planned)
    parents = {r.provenance.parents[0] for r in suggestions(store, number) if r.is_pair}
    report.drafted = sum(1 for p in planned if p.suggests is not None and p.suggests.id in parents)
    report.failed = len(planned) - report.drafted
    report.seconds["draft"] = round(time.monotonic() - mark, 2)
    store.log_event("suggest", {"task": "generate", **report.to_json()})
    return report


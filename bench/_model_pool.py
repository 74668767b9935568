"""The ``model`` lever of ``bench/efficacy_generate.py``: the model being trained suggests the
responses to real pool prompts, and a SIMULATED reviewer accepts the ones close to what it would
have written.

A project is made for the seed (gold and held-out pairs, ``--pool-size`` pool functions as prompts
alone), the gold-only adapter the seed just trained is its trained model, and the suggest stage runs
with ``[suggest] responder = "model"``: the adapter answers ``--model-pool-budget`` picked prompts
greedily. The simulated response oracle accepts a suggestion within chrF ``--model-accept-chrf`` of
the real docstring (a more lenient reviewer than the pool lever's) and writes the real one in
otherwise. Accepted suggestions are machine text the reviewer let through unchanged: accepted
synthetic rows. The rewritten ones are the reviewer's own text and are kept apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.ingest import ingest_file
from goldloop.loop_pairs import answer_suggestions
from goldloop.records import SUGGEST, normalize_text, pair_normalize_mode, text_hash
from goldloop.review import review_states
from goldloop.simulate import ResponseOracle
from goldloop.store import open_store
from goldloop.suggest_pairs import responder_llm, suggest_pairs


def _write(path: Path, rows: list[dict[str, str]], keys: tuple[str, ...]) -> Path:
    path.write_text("".join(json.dumps({k: r[k] for k in keys}) + "\n" for r in rows), encoding="utf-8")
    return path


def pool_oracle(pool: list[dict[str, str]], cfg: Config, accept_chrf: float) -> ResponseOracle:
    """The SIMULATED response oracle that answers suggestions from the pool's own (hidden) docstrings."""
    mode = pair_normalize_mode(cfg.ingest.normalize)
    return ResponseOracle({text_hash(normalize_text(p["prompt"], mode)): normalize_text(p["response"], mode)
                           for p in pool}, "the pool's own docstrings (hidden from the loop)", accept_chrf)


def answered_suggestions(store, number: int = 1) -> list[tuple[str, str, str]]:
    """(prompt, "accepted" or "edited", the response that trains) of each round-``number`` suggestion a
    reviewer accepted as it is or rewrote."""
    states = review_states(store.decisions(round=number))
    made = {r.id: r for r in store.records(origin="pool", round=number) if r.is_pair}
    out = []
    for rec in (r for r in made.values() if r.provenance.strategy == SUGGEST):
        state = states.get(rec.id)
        if state is not None and state.action == "accept":
            out.append((rec.text, "accepted", rec.response))
        elif state is not None and state.action == "edit" and state.new_record_id in made:
            out.append((rec.text, "edited", made[state.new_record_id].response))
    return out


def review_with_model(seed: int, split: dict[str, list[dict[str, str]]], gold_adapter: Path,
                      args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Suggest with the gold-only adapter, answer with the simulated oracle; the reviewed pairs and counts."""
    from sacrebleu.metrics import CHRF

    started = time.monotonic()
    project = work / "model-pool"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    cfg = Config()
    cfg.project.name, cfg.project.task, cfg.project.seed = f"docstrings-model-pool-{seed}", "generate", seed
    cfg.llm.backend, cfg.embed.backend = "fake", args.embedder          # nothing is drafted by [llm] here
    cfg.suggest.responder, cfg.trl.base_model = "model", args.base_model
    cfg.generate.pair_max_tokens = args.max_new_tokens
    cfg.save(project)
    store = open_store(project)
    ingest_file(store, cfg, _write(project / "gold.jsonl", split["gold"], ("prompt", "response")), split="train")
    ingest_file(store, cfg, _write(project / "heldout.jsonl", split["heldout"], ("prompt", "response")),
                split="heldout")
    ingest_file(store, cfg, _write(project / "pool.jsonl", split["pool"], ("prompt",)), split="pool")
    shutil.copytree(gold_adapter, project / ".goldloop" / "adapters" / "gold-only")
    llm = responder_llm(cfg, store, project, threads=args.threads)
    assert llm is not None
    try:
        report = suggest_pairs(store, cfg, 1, args.model_pool_budget, llm, CachedEmbedder(make_embedder(cfg.embed), store))
    finally:
        llm.close()
    oracle = pool_oracle(split["pool"], cfg, args.model_accept_chrf)
    counts = answer_suggestions(store, cfg, 1, oracle)
    answered = answered_suggestions(store)
    store.close()
    accepted = [{"prompt": p, "response": r} for p, how, r in answered if how == "accepted"]
    edited = [{"prompt": p, "response": r} for p, how, r in answered if how == "edited"]
    scores = [CHRF().sentence_score(p["response"], [oracle.responses[text_hash(p["prompt"])]]).score
              for p in accepted]
    print(f"  model pool: {report.drafted} of {report.picked} picked prompts answered by the gold-only adapter; the "
          f"simulated oracle accepted {counts['accept']} (chrF >= {args.model_accept_chrf:g}) and rewrote "
          f"{counts['edit']} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return {"accepted": sorted(accepted, key=lambda p: p["prompt"]), "edited": sorted(edited, key=lambda p: p["prompt"]),
            "suggest": report.to_json(), "answers": counts, "oracle": oracle.to_json(), "responder": llm.model,
            "accepted_chrf_mean": round(statistics.mean(scores), 2) if scores else None,
            "seconds": round(time.monotonic() - started, 1)}

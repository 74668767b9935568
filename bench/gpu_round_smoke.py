"""A generate round on a CUDA GPU, in bf16, with a model larger than the CPU default: a smoke
test of the accelerator path (the project never needs one).

It runs the same round as ``goldloop round`` on a generate project: standard-library docstring
pairs ingested (gold-train and held-out), drafts from the scripted test model, the pair filters,
a snapshot, then :func:`goldloop.evaluate_pairs.evaluate_pair_snapshot`: LoRA adapters trained by
TRL's SFT on gold only and on the snapshot, scored on the held-out pairs (reference NLL, greedy
outputs, chrF, ROUGE-L).

The base model is ``--base-model`` (a folder or hub id), or, where no weights can be reached (a
machine cut off from model hubs), a Llama of ``--hidden`` x ``--layers`` built with RANDOM
weights around ``--tokenizer``: then the figures test the machinery (bf16 on the GPU, memory,
speed, the loss falling), not the quality of any model. The last line is one JSON object.

Usage: python bench/gpu_round_smoke.py --tokenizer DIR [--hidden 2048 --layers 16] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, make_embedder
from goldloop.evaluate_pairs import evaluate_pair_snapshot
from goldloop.filters import run_filters
from goldloop.ingest import ingest_file
from goldloop.loop import generate_stage
from goldloop.snapshot import build_snapshot
from goldloop.stdlib_pairs import stdlib_pairs
from goldloop.store import open_store


def random_llama(tokenizer_dir: str, hidden: int, layers: int, out: Path) -> tuple[str, int]:
    """A Llama with random bf16 weights and the given tokenizer, saved in ``out``; (path, parameters)."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # the folder's tokenizer.json (byte-level BPE) and chat template, read as they are
    folder = Path(tokenizer_dir)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.chat_template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=int(hidden * 2.75) // 64 * 64,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 256,
                         max_position_embeddings=2048, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="")
    parser.add_argument("--tokenizer", default="", help="Tokenizer folder for a random-weight model.")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--gold", type=int, default=200)
    parser.add_argument("--heldout", type=int, default=50)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--generate", type=int, default=8)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this smoke test is for a GPU machine")
    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-gpu-"))
    params = None
    base = args.base_model
    if not base:
        if not args.tokenizer:
            raise SystemExit("give --base-model, or --tokenizer for a random-weight model")
        base, params = random_llama(args.tokenizer, args.hidden, args.layers, work / "random-llama")
    pairs = stdlib_pairs()
    order = random.Random(0).sample(range(len(pairs)), len(pairs))
    project = work / "project"
    project.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.project.name, cfg.project.task = "gpu-smoke", "generate"
    cfg.llm.backend, cfg.embed.backend = "fake", "fake"
    cfg.generate.per_label = 4
    cfg.trl.base_model, cfg.trl.max_steps, cfg.trl.batch_size, cfg.trl.max_length = base, args.steps, args.batch, args.max_length
    cfg.save(project)
    store = open_store(project)
    for split, idx in (("train", order[:args.gold]), ("heldout", order[args.gold:args.gold + args.heldout])):
        path = project / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"prompt": pairs[i]["prompt"], "response": pairs[i]["response"]}) + "\n"
                                for i in idx), encoding="utf-8")
        ingest_file(store, cfg, path, split=split)
    number = store.open_round()
    gen = generate_stage(store, cfg, number, show_progress=False)
    filt = run_filters(store, cfg, number, CachedEmbedder(make_embedder(cfg.embed), store))
    snap = build_snapshot(store, cfg, number)
    torch.cuda.reset_peak_memory_stats()
    fit_started = time.monotonic()
    ev = evaluate_pair_snapshot(store, cfg, snap, work / "adapters", generate=args.generate, max_new_tokens=64)
    fit_seconds = time.monotonic() - fit_started
    summary = json.loads((work / "adapters" / "with_synthetic" / "goldloop-train.json").read_text())
    out = {"device": torch.cuda.get_device_name(0), "precision": summary["precision"], "base_model": base,
           "random_weights": params is not None, "parameters": params, "steps": summary["steps"],
           "losses_first_last": [summary["losses"][0], summary["losses"][-1]] if summary["losses"] else None,
           "train_seconds_with_synthetic": summary["seconds"], "fit_and_score_seconds": round(fit_seconds, 1),
           "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "drafts": gen.records, "passed_filters": filt.passed, "train_sizes": ev.train_sizes,
           "heldout": ev.heldout_size, "nll": {"gold_only": ev.gold_only["nll"], "with_synthetic": ev.with_synthetic["nll"]},
           "verdict": ev.verdict, "wall_seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

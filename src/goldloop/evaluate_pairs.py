"""Judge a `generate` model on held-out real pairs, and train one on pairs.

Scores per held-out pair, for each model (gold only, gold + accepted synthetic, ...):

- **reference NLL**: the mean negative log-likelihood of the real response's tokens given the
  prompt (chat-formatted). Low-noise: every token of every reference counts, no decoding.
- **chrF** (sacrebleu) and **ROUGE-L** F1 (rouge-score) of the model's greedy output against
  the reference;
- **similarity**: cosine of the output's and the reference's embeddings (the project's embedder).

Two models are compared pair by pair with a paired bootstrap of the mean difference. Training
is TRL's SFT with a LoRA adapter on the pairs in prompt → completion form (the loss reads the
response only), through :func:`goldloop.train.train_generator`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .records import Record


def prompt_messages(record: Record) -> list[dict[str, str]]:
    """The chat turns a pair's response answers: an optional system turn, then the user turn
    (the context, when there is one, above the prompt)."""
    turns = [{"role": "system", "content": record.system}] if record.system else []
    user = f"{record.context}\n\n{record.text}" if record.context else record.text
    return turns + [{"role": "user", "content": user}]


def sft_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """TRL prompt → completion rows (conversational) of pairs."""
    return [{"prompt": prompt_messages(r), "completion": [{"role": "assistant", "content": r.response}]}
            for r in records]


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of chat ``messages`` with the assistant's turn opened (the template's own special tokens only)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def _prompt_ids(tokenizer: Any, record: Record) -> list[int]:
    return chat_prompt_ids(tokenizer, prompt_messages(record))


def left_padded(prompts: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[Any, Any, int]:
    """(input ids, attention mask, width) of token-id prompts padded on the left to the longest."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask, width


def reference_nll(model: Any, tokenizer: Any, records: Sequence[Record], max_length: int = 1024, *,
                  batch_size: int = 8) -> list[float]:
    """Per pair, the mean negative log-likelihood (nats per token) of its response given its prompt;
    the response is followed by the end-of-turn token, as the model was taught to stop. Pairs are
    scored ``batch_size`` at a time, right-padded (the padding is masked and never scored)."""
    import torch

    model.eval()
    device = _device(model)
    rows = []
    for rec in records:
        prompt = _prompt_ids(tokenizer, rec)
        answer = tokenizer(rec.response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids = (prompt + answer)[-max_length:]
        rows.append((ids, min(len(answer), len(ids) - 1)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), max(1, batch_size)):
            chunk = rows[start:start + max(1, batch_size)]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chunk], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in chunk], device=device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            for row, (seq, n_answer) in enumerate(chunk):
                end = len(seq) - 1                       # the last scored position of this row
                out.append(float(losses[row, end - n_answer:end].mean()))
    return out


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def greedy_outputs(model: Any, tokenizer: Any, records: Sequence[Record], max_new_tokens: int = 128, *,
                   batch_size: int = 8, no_repeat_ngram_size: int = 0) -> list[str]:
    """The model's greedy response to each pair's prompt (up to its end-of-turn token), ``batch_size``
    prompts at a time (left-padded). ``no_repeat_ngram_size`` > 0 forbids repeating an n-gram of
    that many tokens: small models' greedy outputs otherwise loop until ``max_new_tokens``."""
    import torch

    model.eval()
    device, pad = _device(model), tokenizer.pad_token_id
    prompts = [_prompt_ids(tokenizer, rec) for rec in records]
    extra = {"no_repeat_ngram_size": no_repeat_ngram_size} if no_repeat_ngram_size > 0 else {}
    out = []
    with torch.no_grad():
        for start in range(0, len(prompts), max(1, batch_size)):
            ids, mask, width = left_padded(prompts[start:start + max(1, batch_size)], pad, device)
            made = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, **extra)
            out += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in made]
    return out


def chrf(outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence chrF (sacrebleu's, 0-100) of each output against its reference."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return [float(metric.sentence_score(o, [r]).score) for o, r in zip(outputs, references)]


def rouge_l(outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 (rouge-score's, 0-1) of each output against its reference."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [float(scorer.score(r, o)["rougeL"].fmeasure) for o, r in zip(outputs, references)]


def similarity(embedder: Any, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine similarity of each output's and reference's embeddings (0 for an empty output)."""
    a, b = embedder.embed(list(outputs)), embedder.embed(list(references))
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return [float(x) if o.strip() else 0.0 for x, o in zip((a * b).sum(axis=1), outputs)]


@dataclass
class PairScores:
    """One model's scores on held-out pairs, per pair."""

    model: str
    nll: list[float]
    outputs: list[str] = field(default_factory=list)
    chrf: list[float] = field(default_factory=list)
    rouge_l: list[float] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)

    def means(self) -> dict[str, float | None]:
        def mean(xs: list[float]) -> float | None:
            return round(float(np.mean(xs)), 4) if xs else None

        return {"nll": mean(self.nll), "chrf": mean(self.chrf), "rouge_l": mean(self.rouge_l),
                "similarity": mean(self.similarity)}


def score_pairs(model: Any, tokenizer: Any, heldout: Sequence[Record], name: str, *, generate: bool = True,
                embedder: Any = None, max_new_tokens: int = 128, no_repeat_ngram_size: int = 0) -> PairScores:
    """Every score of one model on the held-out pairs (``generate`` False: reference NLL only)."""
    scores = PairScores(name, reference_nll(model, tokenizer, heldout))
    if generate:
        refs = [r.response for r in heldout]
        scores.outputs = greedy_outputs(model, tokenizer, heldout, max_new_tokens,
                                        no_repeat_ngram_size=no_repeat_ngram_size)
        scores.chrf = chrf(scores.outputs, refs)
        scores.rouge_l = rouge_l(scores.outputs, refs)
        if embedder is not None:
            scores.similarity = similarity(embedder, scores.outputs, refs)
    return scores


def paired_bootstrap(before: Sequence[float], after: Sequence[float], *, n: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """(mean of after - before, low, high): a paired bootstrap interval over the pairs.

    >>> paired_bootstrap([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    (0.5, 0.5, 0.5)
    """
    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return (round(float(diff.mean()), 6), round(float(np.quantile(means, tail)), 6),
            round(float(np.quantile(means, 1 - tail)), 6))


def train_on_pairs(records: Sequence[Record], base_model: str, out_dir: str | Path, *, max_steps: int = 60,
                   batch_size: int = 4, learning_rate: float = 2e-4, max_length: int = 512, seed: int = 0,
                   lora: Any = None) -> Any:
    """A LoRA adapter for ``base_model`` trained by SFT on the pairs; returns the training summary."""
    from .train import train_generator

    with tempfile.TemporaryDirectory(prefix="goldloop-pairs-") as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in sft_rows(records)),
                        encoding="utf-8")
        result = train_generator(path, "sft", base_model=base_model, out_dir=out_dir, max_steps=max_steps,
                                 batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
                                 seed=seed, lora=lora)
    return result


def base_model(cfg: Any) -> str:
    """The model a generate project's adapters are trained on: ``[trl] base_model``, else the packaged SmolLM2."""
    return cfg.trl.base_model or "smollm2"


def fit_adapter(cfg: Any, records: Sequence[Record], out_dir: str | Path) -> tuple[Any, Any]:
    """Train a LoRA adapter on ``records`` with the ``[trl]`` settings; return (model with it, tokenizer)."""
    from .train import LoraSettings

    t = cfg.trl
    train_on_pairs(records, base_model(cfg), out_dir, max_steps=t.max_steps, batch_size=t.batch_size,
                   learning_rate=t.learning_rate or 2e-4, max_length=t.max_length, seed=t.seed,
                   lora=LoraSettings(r=t.lora_r, alpha=t.lora_alpha, dropout=t.lora_dropout))
    return load_adapter(base_model(cfg), out_dir)


def load_adapter(base_model: str, adapter_dir: str | Path) -> tuple[Any, Any]:
    """(model with the LoRA adapter, tokenizer) for scoring, on the GPU when there is one."""
    import torch
    from peft import PeftModel

    from .train._causal_lm import load_causal_lm

    model, tokenizer = load_causal_lm(base_model)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    return (model.to("cuda") if torch.cuda.is_available() else model), tokenizer


@dataclass
class PairEvaluation:
    """Gold only against the snapshot's training set, on the held-out real pairs."""

    gold_only: dict[str, float | None]
    with_synthetic: dict[str, float | None]
    delta_nll: float
    interval: tuple[float, float]
    verdict: str                    # improved | no clear change | worse (by reference NLL; lower is better)
    heldout_size: int
    train_sizes: dict[str, int]
    base_model: str
    deltas: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"task": "generate", "gold_only": self.gold_only, "with_synthetic": self.with_synthetic,
                "delta_nll": self.delta_nll, "interval": list(self.interval), "verdict": self.verdict,
                "heldout_size": self.heldout_size, "train_sizes": self.train_sizes, "base_model": self.base_model,
                "deltas": self.deltas}


def evaluate_pair_snapshot(store: Any, cfg: Any, snapshot: Any, work_dir: str | Path, *, embedder: Any = None,
                           generate: int = 50, max_new_tokens: int = 128) -> PairEvaluation:
    """Train a LoRA adapter on gold-train pairs and one on the snapshot (``[trl]`` settings; the base
    model is ``[trl] base_model``, else the packaged ``smollm2``), score both on every held-out pair
    (reference NLL) and on the first ``generate`` of them (chrF, ROUGE-L, similarity), and call the
    change by a paired bootstrap interval of the NLL difference."""
    from .errors import StageError

    records = store.records(ids=snapshot.record_ids)
    if any(r.split == "heldout" for r in records):
        raise StageError(f"snapshot {snapshot.id} contains held-out records; refusing to train on it")
    gold = [r for r in store.records(origin="gold", split="train") if r.is_pair]
    heldout = [r for r in store.records(origin="gold", split="heldout") if r.is_pair]
    if not gold or not heldout:
        raise StageError("evaluating a generate project needs gold-train and held-out pairs; ingest them first")
    work = Path(work_dir)
    scores = {}
    for name, rows in (("gold_only", gold), ("with_synthetic", records)):
        model, tokenizer = fit_adapter(cfg, rows, work / name)
        nll = score_pairs(model, tokenizer, heldout, name, generate=False).nll
        gen = (score_pairs(model, tokenizer, heldout[:generate], name, embedder=embedder,
                           max_new_tokens=max_new_tokens) if generate else PairScores(name, []))
        scores[name] = PairScores(name, nll, gen.outputs, gen.chrf, gen.rouge_l, gen.similarity)
        del model
    a, b = scores["gold_only"], scores["with_synthetic"]
    delta, low, high = paired_bootstrap(a.nll, b.nll, n=max(cfg.evaluate.bootstrap, 200),
                                        confidence=cfg.evaluate.confidence, seed=cfg.project.seed)
    verdict = "improved" if high < 0 else "worse" if low > 0 else "no clear change"
    means_a, means_b = a.means(), b.means()
    deltas = {k: (None if means_a[k] is None or means_b[k] is None else round(float(means_b[k]) - float(means_a[k]), 4))
              for k in means_a}
    return PairEvaluation(means_a, means_b, delta, (low, high), verdict, len(heldout),
                          {"gold_only": len(gold), "with_synthetic": len(records)}, base_model(cfg), deltas)


def close_pair_round(store: Any, cfg: Any, project_dir: str | Path, number: int, *, embedder: Any = None,
                     generate: int = 50) -> tuple[Any, PairEvaluation]:
    """Snapshot the round's pairs, judge them against gold only on held-out pairs, and close the
    round with the evaluation in its metrics (the adapters stay under ``.goldloop/adapters``)."""
    from .snapshot import build_snapshot

    snap = build_snapshot(store, cfg, number)
    evaluation = evaluate_pair_snapshot(store, cfg, snap, Path(project_dir) / ".goldloop" / "adapters" / f"round-{number}",
                                        embedder=embedder, generate=generate)
    store.finish_round(number, snap.id, {"evaluation": evaluation.to_json()})
    return snap, evaluation

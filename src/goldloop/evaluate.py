"""Held-out evaluation: gold-only vs gold + accepted synthetic, trained and scored in one run.

Only this module reads held-out real records, and only to score a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Config
from .embed import CachedEmbedder
from .errors import StageError, require_classify
from .governance import enforce
from .records import Record, Snapshot
from .store import Store
from .suites import latest_versions, score_suites, suite_texts
from .train import TextClassifier, build_classifier, row_weights


def scores(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision / recall / F1 / support.

    >>> s = scores(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    >>> round(s["accuracy"], 3), round(s["macro_f1"], 3)
    (0.667, 0.667)
    """
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[y] for y in y_true])
    p = np.array([index.get(y, -1) for y in y_pred])
    per_label, f1s = {}, []
    for label, i in index.items():
        tp = int(np.sum((t == i) & (p == i)))
        fp = int(np.sum((t != i) & (p == i)))
        fn = int(np.sum((t == i) & (p != i)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
        if tp + fn:
            f1s.append(f1)
    return {"accuracy": float(np.mean(t == p)) if len(t) else 0.0,
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0, "per_label": per_label}


def _macro_f1_many(t: np.ndarray, p: np.ndarray, n_labels: int, samples: np.ndarray) -> np.ndarray:
    """Macro-F1 of each bootstrap resample (rows of ``samples`` index the held-out set)."""
    ts, ps = t[samples], p[samples]
    out = np.zeros(len(samples))
    present = np.zeros(len(samples))
    for i in range(n_labels):
        tp = np.sum((ts == i) & (ps == i), axis=1)
        fp = np.sum((ts != i) & (ps == i), axis=1)
        fn = np.sum((ts == i) & (ps != i), axis=1)
        denom = 2 * tp + fp + fn
        out += np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0) * ((tp + fn) > 0)
        present += (tp + fn) > 0
    return out / np.maximum(present, 1)


def bootstrap_delta(y_true: list[str], pred_a: list[str], pred_b: list[str], labels: list[str],
                    n: int, confidence: float, seed: int) -> tuple[float, float]:
    """Paired bootstrap interval of macro-F1(b) - macro-F1(a) over the held-out set."""
    if n <= 0 or not y_true:
        return (float("nan"), float("nan"))
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[y] for y in y_true])
    a = np.array([index.get(y, -1) for y in pred_a])
    b = np.array([index.get(y, -1) for y in pred_b])
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, n, 200):
        samples = rng.integers(0, len(t), size=(min(200, n - start), len(t)))
        deltas.append(_macro_f1_many(t, b, len(labels), samples) - _macro_f1_many(t, a, len(labels), samples))
    d = np.concatenate(deltas)
    tail = (1 - confidence) / 2
    return float(np.quantile(d, tail)), float(np.quantile(d, 1 - tail))


@dataclass
class Evaluation:
    gold_only: dict[str, Any]
    with_synthetic: dict[str, Any]
    delta_macro_f1: float
    interval: tuple[float, float]
    verdict: str                # improved | no clear change | worse
    heldout_size: int
    train_sizes: dict[str, int]
    suites: dict[str, Any] = field(default_factory=dict)   # goldloop.suites.score_suites, apart from held-out

    def to_json(self) -> dict[str, Any]:
        return {"gold_only": self.gold_only, "with_synthetic": self.with_synthetic,
                "delta_macro_f1": self.delta_macro_f1, "interval": list(self.interval),
                "verdict": self.verdict, "heldout_size": self.heldout_size, "train_sizes": self.train_sizes,
                "suites": self.suites}


def _fit(embedder: CachedEmbedder, records: list[Record], cfg: Config,
         weights: dict[str, float] | None = None) -> TextClassifier:
    return build_classifier(cfg, embedder).fit(records, row_weights(records, cfg.train.synthetic_weight, weights))


def evaluate_snapshot(store: Store, cfg: Config, snapshot: Snapshot, embedder: CachedEmbedder) -> Evaluation:
    """Train gold-only and snapshot models, score both on held-out real data."""
    require_classify(cfg.project.task, "evaluation")
    records = store.records(ids=snapshot.record_ids)
    if any(r.split == "heldout" for r in records):
        raise StageError(f"snapshot {snapshot.id} contains held-out records; refusing to train on it")
    gold = [r for r in records if r.origin == "gold"]
    if not gold:
        raise StageError("refusing to train on synthetic data alone: the snapshot has no gold records")
    stored = snapshot.manifest.get("weights") or {}
    heldout = store.records(origin="gold", split="heldout")
    if not heldout:
        raise StageError("no held-out real data to evaluate on; ingest with a heldout_fraction above 0 "
                         "or ingest a test file with --split heldout")
    enforce(store, cfg, snapshot, "evaluate", records)
    labels = sorted({r.label for r in records} | {r.label for r in heldout})
    test_texts = [r.text for r in heldout]
    y_test = [r.label for r in heldout]
    model_gold = _fit(embedder, gold, cfg)
    model_full = _fit(embedder, records, cfg, stored) if len(records) > len(gold) else model_gold
    pred_gold = model_gold.predict(test_texts)
    pred_full = model_full.predict(test_texts) if model_full is not model_gold else pred_gold
    versions = latest_versions(store)                # stress-test suites, scored apart from held-out data
    cases = suite_texts(versions)
    suite_gold = model_gold.predict(cases) if cases else []
    suite_full = model_full.predict(cases) if cases and model_full is not model_gold else suite_gold
    suites = score_suites(versions, {"gold_only": suite_gold, "with_synthetic": suite_full})
    s_gold, s_full = scores(y_test, pred_gold, labels), scores(y_test, pred_full, labels)
    delta = s_full["macro_f1"] - s_gold["macro_f1"]
    low, high = bootstrap_delta(y_test, pred_gold, pred_full, labels, cfg.evaluate.bootstrap,
                                cfg.evaluate.confidence, cfg.project.seed)
    if np.isnan(low):
        verdict = "improved" if delta > 0 else ("worse" if delta < 0 else "no clear change")
    else:
        verdict = "improved" if low > 0 else ("worse" if high < 0 else "no clear change")
    store.add_training(snapshot.id, f"classify:{cfg.train.classifier}", f"held-out evaluation model of {snapshot.name}",
                       {"macro_f1": round(s_full["macro_f1"], 4), "gold_only_macro_f1": round(s_gold["macro_f1"], 4),
                        "heldout": len(heldout), "rows": len(records)})
    return Evaluation(gold_only=s_gold, with_synthetic=s_full, delta_macro_f1=delta, interval=(low, high),
                      verdict=verdict, heldout_size=len(heldout),
                      train_sizes={"gold_only": len(gold), "with_synthetic": len(records)}, suites=suites)

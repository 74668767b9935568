"""The `suggest` stage: the current model proposes labels for real, unlabelled pool records and
picks the ones a reviewer should see.

Picking follows what works from a cold start with pretrained embeddings: optionally a share
drawn at random (exploration, ``[suggest] random_share``), then the typical records of each
predicted label (the record nearest the centre of each cluster, after TypiClust, Hacohen et al.
2022), then the most uncertain ones (smallest margin between the two likeliest labels, Schröder
et al. 2022). The budget leans toward the labels the error analysis found weak, and an uncertain
record whose two likeliest labels are a confused pair ranks first.

Scoring a big pool uses cheap static (model2vec) embeddings; only the records picked are
embedded by the trainer's embedder, whose model gives the label the reviewer sees. A pool
record whose text duplicates a held-out record (exactly, or by static-embedding similarity) is
never picked: held-out isolation holds for the pool too.

With ``[executor] backend = "ray"`` the pool is embedded, checked and scored on Ray Data and the
picks are streamed from the workers' files (:mod:`goldloop._suggest_ray`); the labelling step
below is the same for both.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Config
from .embed import CachedEmbedder, Embedder, HashingEmbedder
from .errors import StageError, require_classify
from .records import Record, content_hash, text_hash
from .review import review_states, suggestions
from .store import Store
from .train import LinearClassifier, build_classifier, row_weights


@dataclass
class SuggestReport:
    """What one round's suggest stage found and picked (counts and ids only, no text)."""

    round: int
    pool: int = 0                     # unlabelled pool records in the store
    answered: int = 0                 # answered in an earlier round (a training row, or unusable)
    heldout_excluded: int = 0         # duplicates of a held-out record: never shown
    eligible: int = 0
    picked: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    agreement: float | None = None    # share of picks where static and trainer models agree
    seconds: dict[str, float] = field(default_factory=dict)
    already: bool = False             # the round's suggestions were made by an earlier run
    self_trained: int = 0             # confident unreviewed pool rows added as machine-labelled ([suggest] self_training)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "pool": self.pool, "answered": self.answered,
                "heldout_excluded": self.heldout_excluded, "eligible": self.eligible, "picked": self.picked,
                "by_reason": self.by_reason, "by_label": self.by_label, "agreement": self.agreement,
                "seconds": self.seconds, "already": self.already, "self_trained": self.self_trained}


@dataclass
class Scored:
    """What scoring the open pool leaves for labelling. ``rows``: eligible pool records in pool
    order, every one locally; on Ray only the picked ones and the candidates for self-training,
    which is all the labelling step reads. ``picked``: (index into ``rows``, why)."""

    answered: int
    excluded: int                     # held-out duplicates left out
    excluded_ids: list[str]           # the first 1,000 of their ids, sorted
    eligible: int
    rows: list[Record]
    proba: np.ndarray                 # the selection model's probabilities of ``rows``
    labels: list[str]
    picked: list[tuple[int, str]]


def fit_scorer(cfg: Config, embed: Any, training: Sequence[Record], weights: Mapping[str, float] | None
               ) -> LinearClassifier:
    """The selection model: a linear model over the selection embedder's vectors of ``training``."""
    train_vecs = embed.embed([r.text for r in training])
    return LinearClassifier(C=cfg.train.C, seed=cfg.project.seed).fit(
        train_vecs, [r.label for r in training], row_weights(training, cfg.train.synthetic_weight, weights))


def score_pool(store: Store, cfg: Config, budget: int, embed: Any, training: Sequence[Record], answered: set[str],
               weights: Mapping[str, float] | None, f1: Mapping[str, float] | None,
               confused: Sequence[tuple[str, str]], seed: int) -> Scored:
    """The open pool, embedded, checked against held-out data, scored and picked in this process."""
    pool = store.records(origin="pool", split="pool")
    open_pool = [r for r in pool if r.id not in answered]
    vecs = embed.embed([r.text for r in open_pool]) if open_pool else np.zeros((0, 1), dtype=np.float32)
    excluded = heldout_duplicates(store, cfg, open_pool, vecs, embed)
    keep = [i for i, r in enumerate(open_pool) if r.id not in excluded]
    eligible, vecs = [open_pool[i] for i in keep], vecs[keep]
    scored = Scored(len(pool) - len(open_pool), len(excluded), sorted(excluded)[:1000], len(eligible), eligible,
                    np.zeros((0, 0)), [], [])
    if not eligible:
        return scored
    scorer = fit_scorer(cfg, embed, training, weights)
    scored.proba, scored.labels = scorer.predict_proba(vecs), scorer.labels
    scored.picked = pick(scored.proba, scorer.labels, vecs, budget, cfg, f1, confused, seed=seed)
    return scored


def selection_embedder(cfg: Config, trainer: CachedEmbedder) -> Embedder | CachedEmbedder:
    """The embedder that scores the whole pool: static vectors, or the trainer's (``[suggest]
    selection_embedder``). With the test embedder configured, its own fast hashing vectors."""
    if cfg.suggest.selection_embedder == "trainer":
        return trainer
    if cfg.embed.backend == "fake":
        return HashingEmbedder()
    from .embed_static import StaticEmbedder

    return StaticEmbedder()


def answered_pool_ids(store: Store) -> tuple[set[str], set[str]]:
    """Pool record ids answered by a reviewer: (confirmed or corrected, rejected as unusable)."""
    states = review_states(store.decisions())
    used, unusable = set(), set()
    for rec in suggestions(store):
        state = states.get(rec.id)
        if state is None:
            continue
        if state.action in ("accept", "edit"):
            used.add(rec.provenance.parents[0])
        elif state.action == "reject":
            unusable.add(rec.provenance.parents[0])
    return used, unusable - used


class HeldoutCheck:
    """Held-out texts as pool records are checked against them: their hashes, a MinHash index of
    their word sets, and their selection vectors; built once, then any batch of the pool."""

    def __init__(self, cfg: Config, heldout: Sequence[str], embed: Any) -> None:
        from .filters._neardup import NearDupIndex

        self.hashes = {text_hash(t) for t in heldout}
        self.index = NearDupIndex(threshold=cfg.filter.near_dup_threshold, seed=cfg.project.seed)
        self.index.add(list(range(len(heldout))), list(heldout))
        self.vecs = np.asarray(embed.embed(list(heldout)), dtype=np.float64) if heldout else None
        self.similarity = cfg.suggest.heldout_similarity

    def duplicates(self, texts: Sequence[str], vecs: np.ndarray) -> np.ndarray:
        """One flag per text: it repeats a held-out text."""
        out = np.zeros(len(texts), dtype=bool)
        if self.vecs is None or not len(texts):
            return out
        out |= np.array([text_hash(t) in self.hashes for t in texts], dtype=bool)
        out |= np.array([bool(hits) for hits in self.index.query(list(texts))], dtype=bool)
        for start in range(0, len(texts), 2048):
            # in float64, so a record's similarity does not depend on the batch it comes in
            sims = np.asarray(vecs[start:start + 2048], dtype=np.float64) @ self.vecs.T
            out[start:start + len(sims)] |= sims.max(axis=1) >= self.similarity
        return out


def heldout_duplicates(store: Store, cfg: Config, pool: Sequence[Record], pool_vecs: np.ndarray,
                       embed: Any) -> set[str]:
    """Ids of pool records that repeat a held-out text: exactly, as a near-duplicate (MinHash
    Jaccard of word sets at ``[filter] near_dup_threshold``, as the leakage filter judges drafts),
    or by embedding similarity at ``[suggest] heldout_similarity``."""
    heldout = store.records(origin="gold", split="heldout")
    if not heldout or not pool:
        return set()
    flags = HeldoutCheck(cfg, [r.text for r in heldout], embed).duplicates([r.text for r in pool], pool_vecs)
    return {r.id for r, flag in zip(pool, flags) if flag}


def label_weights(labels: Sequence[str], f1: Mapping[str, float] | None, boost: float) -> dict[str, float]:
    """A label's share of the pool budget: 1 + boost * (1 - its held-out F1); 1 when unknown.

    >>> label_weights(["a", "b"], {"a": 1.0, "b": 0.5}, 2.0)
    {'a': 1.0, 'b': 2.0}
    """
    f1 = f1 or {}
    return {label: 1.0 + boost * (1.0 - float(f1[label])) if label in f1 else 1.0 for label in labels}


def typical_picks(vecs: np.ndarray, n: int, seed: int) -> list[tuple[int, int]]:
    """(row, cluster size) of the ``n`` most typical rows: one per k-means cluster, the row most
    similar to its cluster's mean, biggest clusters first."""
    if n <= 0 or len(vecs) == 0:
        return []
    if n >= len(vecs):
        return [(i, 1) for i in range(len(vecs))]
    from sklearn.cluster import KMeans

    assign = KMeans(n_clusters=n, n_init=3, random_state=seed).fit_predict(vecs)
    picks = []
    for c in range(n):
        members = np.flatnonzero(assign == c)
        if len(members) == 0:
            continue
        centre = vecs[members].mean(axis=0)
        picks.append((int(members[int(np.argmax(vecs[members] @ centre))]), len(members)))
    return sorted(picks, key=lambda p: -p[1])


def pick(proba: np.ndarray, labels: Sequence[str], vecs: np.ndarray, budget: int, cfg: Config,
         f1: Mapping[str, float] | None = None, confused: Sequence[tuple[str, str]] = (),
         seed: int = 0) -> list[tuple[int, str]]:
    """(row, reason) of up to ``budget`` rows: ``[suggest] random_share`` of them drawn at random
    (seeded by ``seed``); the rest per predicted label, its typical rows first, then the most
    uncertain; a label's share follows :func:`label_weights`; what a label cannot use goes to the
    most uncertain rows overall."""
    if budget <= 0 or len(proba) == 0:
        return []
    n_random = min(len(proba), round(budget * cfg.suggest.random_share))
    drawn = {int(i): "random: drawn from the open pool (exploration)"
             for i in np.random.default_rng(seed).choice(len(proba), size=n_random, replace=False)}
    if not drawn:
        return _pick_by_label(proba, labels, vecs, budget, cfg, f1, confused)
    rest = [i for i in range(len(proba)) if i not in drawn]
    more = _pick_by_label(proba[rest], labels, vecs[rest], budget - n_random, cfg, f1, confused)
    return list(drawn.items()) + [(rest[i], why) for i, why in more]


def _pick_by_label(proba: np.ndarray, labels: Sequence[str], vecs: np.ndarray, budget: int, cfg: Config,
                   f1: Mapping[str, float] | None, confused: Sequence[tuple[str, str]]) -> list[tuple[int, str]]:
    """The typical-then-uncertain picks of :func:`pick`, per predicted label."""
    from .plan import allocate

    if budget <= 0 or len(proba) == 0:
        return []
    order = np.argsort(-proba, axis=1)
    top, second = order[:, 0], order[:, 1] if proba.shape[1] > 1 else order[:, 0]
    rows = np.arange(len(proba))
    margin = proba[rows, top] - proba[rows, second]
    pairs = {frozenset(p) for p in confused}
    boosted = np.array([frozenset((labels[a], labels[b])) in pairs for a, b in zip(top, second)])
    urgency = margin - cfg.suggest.confused_pair_boost * boosted
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(top):
        by_label[labels[t]].append(i)
    weights = label_weights([lab for lab in labels if by_label.get(lab)], f1, cfg.suggest.weak_label_boost)
    quota = allocate(min(budget, len(proba)), weights, minimum=1)
    chosen: dict[int, str] = {}
    for label, n in sorted(quota.items()):
        members = np.array(by_label[label])
        n_typical = min(len(members), round(n * cfg.suggest.typical_share))
        for row, size in typical_picks(vecs[members], n_typical, cfg.project.seed):
            chosen[int(members[row])] = f"typical of {label} (cluster of {size})"
        rest = [int(i) for i in members[np.argsort(urgency[members], kind="stable")] if int(i) not in chosen]
        for i in rest[:n - n_typical]:
            chosen[i] = _uncertain(i, labels, top, second, margin, boosted)
    for i in np.argsort(urgency, kind="stable"):
        if len(chosen) >= budget:
            break
        if int(i) not in chosen:
            chosen[int(i)] = _uncertain(int(i), labels, top, second, margin, boosted)
    return list(chosen.items())


def _uncertain(i: int, labels: Sequence[str], top: np.ndarray, second: np.ndarray, margin: np.ndarray,
               boosted: np.ndarray) -> str:
    why = f"uncertain: {labels[top[i]]} vs {labels[second[i]]} (margin {margin[i]:.2f})"
    return why + ("; a confused pair" if boosted[i] else "")


def suggest(store: Store, cfg: Config, number: int, budget: int, trainer: CachedEmbedder, training: Sequence[Record],
            *, weights: Mapping[str, float] | None = None, f1: Mapping[str, float] | None = None,
            confused: Sequence[tuple[str, str]] = (), model_name: str = "gold only") -> SuggestReport:
    """Propose labels for up to ``budget`` pool records and store them as round ``number``'s
    suggestions (once: a second run of the same round reports what the first stored)."""
    require_classify(cfg.project.task, "suggest")
    report = SuggestReport(round=number)
    made = suggestions(store, number)
    if made:
        report.already, report.picked = True, len(made)
        report.by_label = dict(Counter(r.label for r in made))
        report.by_reason = dict(Counter(str(r.provenance.params.get("picked_as", "")) for r in made))
        return report
    report.pool = store.count_records(origin="pool", split="pool")
    if budget <= 0 or not report.pool:
        return report
    if not training or len({r.label for r in training}) < 2:
        raise StageError("suggesting labels needs a model: ingest gold data with at least two labels first")
    started = time.monotonic()
    used, unusable = answered_pool_ids(store)
    seed = int(content_hash(cfg.project.seed, number, "random picks")[:8], 16)
    embed = selection_embedder(cfg, trainer)
    if cfg.executor.backend == "ray":
        from ._suggest_ray import score_on_ray

        scored = score_on_ray(store, cfg, budget, embed, training, used | unusable, weights, f1, confused, seed)
    else:
        scored = score_pool(store, cfg, budget, embed, training, used | unusable, weights, f1, confused, seed)
    report.answered, report.heldout_excluded = scored.answered, scored.excluded
    report.eligible = scored.eligible
    if not scored.eligible:
        return report
    eligible, proba, picked, excluded = scored.rows, scored.proba, scored.picked, scored.excluded_ids
    report.seconds["score_and_pick"] = round(time.monotonic() - started, 2)

    started = time.monotonic()
    chosen = [eligible[i] for i, _ in picked]
    model = build_classifier(cfg, trainer).fit(list(training), row_weights(training, cfg.train.synthetic_weight,
                                                                           weights))
    final = model.predict_proba([r.text for r in chosen]) if chosen else np.zeros((0, len(model.labels)))
    machine: list[Record] = []
    if cfg.suggest.self_training:
        taken = {i for i, _ in picked}
        unpicked = [i for i in range(len(eligible)) if i not in taken]
        if cfg.suggest.self_training_model == "trainer":
            rest_proba, rest_labels = model.predict_proba([eligible[i].text for i in unpicked]), model.labels
            source = f"{cfg.train.classifier}:{trainer.name}:{model_name}"
        else:
            rest_proba, rest_labels, source = proba[unpicked], scored.labels, f"selection:{model_name}"
        machine = self_training_rows(cfg, number, [eligible[i] for i in unpicked], rest_proba, rest_labels, source)
        report.seconds["self_training"] = round(time.monotonic() - started, 2)
    records, agree = [], 0
    for (i, why), rec, p in zip(picked, chosen, final):
        order = np.argsort(-p)
        label = model.labels[int(order[0])]
        runner_up = model.labels[int(order[1])] if len(order) > 1 else label
        static_label = scored.labels[int(np.argmax(proba[i]))]
        agree += static_label == label
        params = {"confidence": round(float(p[order[0]]), 4), "runner_up": runner_up,
                  "margin": round(float(p[order[0]] - (p[order[1]] if len(order) > 1 else 0.0)), 4),
                  "picked_as": why.split(":")[0].split(" of ")[0], "why": why, "training_set": model_name,
                  "selection_label": static_label}
        records.append(Record.suggested(rec, label, f"{cfg.train.classifier}:{trainer.name}", params, number))
    report.seconds["label"] = round(time.monotonic() - started, 2)
    report.picked = len(records)
    report.by_label = dict(Counter(r.label for r in records))
    report.by_reason = dict(Counter(str(r.provenance.params["picked_as"]) for r in records))
    report.agreement = round(agree / len(records), 4) if records else None
    report.self_trained = len(machine)
    with store.transaction():
        store.add_records(records + machine)
        store.log_event("suggest", {**report.to_json(), "excluded_ids": excluded})
    return report


def self_training_rows(cfg: Config, number: int, candidates: Sequence[Record], proba: np.ndarray,
                       labels: Sequence[str], model: str) -> list[Record]:
    """With ``[suggest] self_training``: the most confident of ``candidates`` (open pool records no
    reviewer answered and none picked this round) under ``model``'s label, as machine-labelled rows.
    They count as synthetic, never as real, and a round's rows replace the last round's: labels
    come from the newest model, and a record a reviewer has since answered is never among them."""
    s = cfg.suggest
    if not s.self_training or s.self_training_max <= 0 or len(proba) == 0:
        return []
    confidence = proba.max(axis=1)
    red = set(cfg.policy.gold_only_labels)          # machine labels never train those
    order = [int(i) for i in np.argsort(-confidence, kind="stable")
             if confidence[i] >= s.self_training_confidence and labels[int(np.argmax(proba[i]))] not in red]
    order = order[:s.self_training_max]
    return [Record.self_trained(candidates[i], labels[int(np.argmax(proba[i]))], model,
                                {"confidence": round(float(confidence[i]), 4)}, number) for i in order]

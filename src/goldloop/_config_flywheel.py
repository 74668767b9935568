"""The flywheel's sections of goldloop.toml: `[suggest]` (labels proposed for real pool records)
and `[synthetic]` (which drafts may train, and at what weight). Re-exported by
:mod:`goldloop.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config_fields import setting as _f


@dataclass
class SuggestConfig:
    random_share: float = _f(0.0, "Share of a round's pool picks drawn at random from the open pool (exploration) "
                                  "before the typical and uncertain ones. On 20 Newsgroups, picking alone (10 "
                                  "seeds, 390 picks, self-training on), half random and half uncertain "
                                  "(typical_share 0) scored 0.729 unseen-test macro-F1 against 0.723 for typical + "
                                  "uncertain; but in the full flywheel (drafts competing for the budget, 3 seeds) "
                                  "it scored 0.711 against 0.723, so it is off.",
                             minimum=0.0, maximum=1.0)
    typical_share: float = _f(0.5, "Share of a round's pool picks that are typical records of each predicted label "
                                   "(the record nearest each cluster's centre, TypiClust-style); the rest are the "
                                   "most uncertain ones (smallest margin between the two likeliest labels).",
                              minimum=0.0, maximum=1.0)
    weak_label_boost: float = _f(2.0, "How much more of the pool budget a label gets for being weak: a label's "
                                      "weight is 1 + weak_label_boost * (1 - its held-out F1).", minimum=0.0)
    confused_pair_boost: float = _f(0.1, "An uncertain record whose two likeliest labels are a confused pair of the "
                                         "error analysis ranks as if its margin were this much smaller.",
                                    minimum=0.0, maximum=1.0)
    heldout_similarity: float = _f(0.98, "A pool record whose selection embedding has at least this cosine "
                                         "similarity to a held-out record counts as its duplicate: never shown or "
                                         "trained on (so does an exact or MinHash near-duplicate, at [filter] "
                                         "near_dup_threshold). Static vectors of long posts are close to one another: "
                                         "on 20 Newsgroups 0.9 caught 21 % of the pool, 0.98 0.05 %.",
                                   minimum=0.5, maximum=1.0)
    selection_embedder: str = _f("static", "Embeddings that score and pick pool records. `static`: the model2vec "
                                           "model distilled from MiniLM (thousands of posts a second; needs the "
                                           "`semantic` extra). `trainer`: the `[embed]` embedder (slow on big pools). "
                                           "The trainer's embedder always gives the label a reviewer sees.",
                                 choices=("static", "trainer"))
    self_training: bool = _f(False, "Also train on confident pool records no reviewer answered (self-training), at "
                                    "self_training_weight. Off by default: such rows are machine-labelled, so they "
                                    "count toward the synthetic share and never as reviewed.")
    self_training_model: str = _f("trainer", "The model whose confident labels make self-training rows: `trainer` "
                                             "(the `[embed]` embedder and `[train]` classifier, as the loop trains; "
                                             "it embeds every open pool record once, cached) or `selection` (the "
                                             "fast model that picks pool records).", choices=("trainer", "selection"))
    self_training_confidence: float = _f(0.6, "Least confidence of that model for a self-training row. On 20 "
                                              "Newsgroups (20 labels, 200 gold + 390 reviewed posts, a pool of "
                                              "8,000, 5 seeds) 0.6 gave 92 % correct labels and the best held-out "
                                              "macro-F1; 0.8 gave 97 % correct but fewer rows and less lift.",
                                         minimum=0.5, maximum=1.0)
    self_training_weight: float = _f(0.5, "Training weight of a self-training row.", minimum=0.0, maximum=1.0)
    self_training_max: int = _f(5000, "Most self-training rows a round has, the most confident first (they replace "
                                      "the last round's). Breadth pays: on the set above, 1,000 rows lifted held-out "
                                      "macro-F1 by -0.001, every row over the confidence (~4,000) by +0.008.",
                                minimum=0)
    self_training_keep: str = _f("least_confident", "Which self-training rows stay when `[policy] "
                                                    "max_synthetic_share` leaves room for only some: "
                                                    "`least_confident` (those nearest the threshold, the rows "
                                                    "that move the model) or `most_confident`. On the set above "
                                                    "(room for 2,360 of ~4,050), unseen-test macro-F1 was 0.719 "
                                                    "keeping the least confident, 0.717 a random sample, 0.711 "
                                                    "the most confident, 0.719 with no trim.",
                                 choices=("least_confident", "most_confident"))
    responder: str = _f("llm", "Who drafts the response to a picked pool prompt in a `generate` project. `llm`: "
                               "the `[llm]` drafting model, shown the nearest gold pairs. `model`: the model the "
                               "project trains (`[trl] base_model` with the adapter of the kept round, else the "
                               "gold-only adapter), answering the prompt as it was taught, greedily, in this "
                               "process; it needs a trained adapter (`goldloop loop` or `goldloop evaluate`). "
                               "Accepting its texts does not pay by itself: on the standard library's "
                               "docstrings (100 gold pairs, 400 pool prompts, one seed) the 30 greedy "
                               "suggestions a simulated reviewer accepted raised held-out reference NLL by "
                               "0.040 (chrF +0.8); its value is the reviewer's rewrites, DPO pairs against "
                               "what the model says now.",
                        choices=("llm", "model"))



@dataclass
class SyntheticConfig:
    selection: bool = _f(False, "Run `synthetic_selection.v1`: drop drafts whose label a cross-validated gold "
                               "classifier finds unlikely (a per-label threshold) or whose nearest gold rows carry "
                               "another label, cap each label's drafts, and weight each kept draft as `weighting` "
                               "says. The weights are stored on the snapshot and used by every trainer.")
    weighting: str = _f("flat", "A kept draft's weight. `flat`: `[train] synthetic_weight`. `importance`: that "
                                "times p_real(y|x) / p_syn(y|x), clipped to `weight_cap`. On 20 Newsgroups (5 "
                                "seeds, ~130 reviewer-accepted drafts each, unseen test posts) the ratio made the "
                                "drafts' lift noisier without raising it: at the same mean weight, +0.0048 "
                                "macro-F1 (one seed below zero) against +0.0071 flat (every seed above).",
                        choices=("flat", "importance"))
    confidence_quantile: float = _f(0.2, "A label's confidence threshold: this quantile of its gold rows' cross-"
                                         "validated probability of their own label.", minimum=0.0, maximum=1.0)
    knn_k: int = _f(3, "Nearest gold rows (cosine) that must mostly share a draft's label.", minimum=1)
    weight_cap: float = _f(3.0, "`importance` weighting: cap of the p_real / p_syn ratio (before [train] "
                                  "synthetic_weight).",
                           minimum=1.0)
    max_per_gold: float = _f(3.0, "Per label, at most this many drafts per gold-train row in a round (the most "
                                  "confident are kept).", minimum=0.0)

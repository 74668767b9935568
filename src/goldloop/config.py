"""goldloop.toml: the typed configuration of one project (one use case).

Each section is a dataclass; each field has a default and a ``help`` text. The loader, the
``goldloop config-reference`` page, ``goldloop init`` and the options of ``goldloop train``
(from ``[trl]``) all derive from these classes, so the file, the docs and the CLI never
disagree.

>>> cfg = Config.from_dict({"project": {"name": "tickets"}, "generate": {"per_label": 4}})
>>> cfg.generate.per_label
4
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ._config_fields import build_section, setting as _f, suggest
from ._config_flywheel import SuggestConfig, SyntheticConfig
from ._config_executor import ExecutorConfig
from ._config_policy import PolicyConfig
from .errors import ConfigError

CONFIG_FILE = "goldloop.toml"


@dataclass
class ProjectConfig:
    name: str = _f("my-project", "Name of the use case this project serves (ticket triage, claim summaries...).")
    task: str = _f("classify", "Shape of a record. `classify`: text -> one label from a fixed set. `generate`: "
                               "prompt -> response. `trajectory`: episodes in a simulator (goldloop.trajectory; "
                               "only `goldloop demo --task trajectory` and `audit` take it on the command line).",
                   choices=("classify", "generate", "trajectory"))
    labels: list[str] = _f([], "The fixed label set. Empty: taken from the first ingested file. "
                               "A row whose label is not in a non-empty set is an ingest error.")
    seed: int = _f(0, "Seed for every random choice (held-out split, seed sampling, bootstrap), "
                      "so a run can be repeated exactly.")
    database_url: str = _f("", "Where the store lives. Empty: `.goldloop/store.db` (SQLite) in the project. "
                               "`postgresql://user:password@host:5432/db` for a team server (install "
                               "`goldloop[postgres]`). The GOLDLOOP_DATABASE_URL environment variable wins "
                               "over this key, so a password need not be written here.")


@dataclass
class IngestConfig:
    text_column: str = _f("text", "Column (CSV, Parquet) or key (JSONL) that holds the text.")
    label_column: str = _f("label", "Column or key that holds the label.")
    prompt_column: str = _f("prompt", "`generate`: column or key of the prompt.")
    response_column: str = _f("response", "`generate`: column or key of the response.")
    system_column: str = _f("system", "`generate`: column or key of an optional system text.")
    context_column: str = _f("context", "`generate`: column or key of optional context the response draws on.")
    messages_column: str = _f("", "`generate`: a column or key holding each pair as TRL's conversational "
                                  "`messages` (an optional system turn, one user turn, one assistant turn); "
                                  "used instead of the prompt and response columns.")
    normalize: str = _f("whitespace", "How text is normalised on ingest and after generation. "
                        "`whitespace`: Unicode NFC, whitespace collapsed to single spaces. "
                        "`letters`: also lower-cased with everything but letters removed. "
                        "`none`: stripped only. Synthetic text is normalised the same way as gold, "
                        "so a model cannot tell them apart by style. For `generate`, `whitespace` keeps "
                        "line breaks and indentation (trailing spaces go, runs of blank lines become one).",
                        choices=("whitespace", "letters", "none"))
    heldout_fraction: float = _f(0.2, "Share of each label's gold rows set aside as held-out real data, "
                                      "used by evaluation only.", minimum=0.0, maximum=0.9)
    min_heldout_per_label: int = _f(1, "At least this many held-out rows per label (when the label has "
                                       "enough rows).", minimum=0)
    max_chars: int = _f(20000, "Rows with longer text are an ingest error (split them first).", minimum=1)


@dataclass
class LLMConfig:
    backend: str = _f("embedded", "`embedded`: the in-process llama.cpp model installed with goldloop "
                      "(offline). `openai`: any OpenAI-compatible endpoint (vLLM, llama.cpp server, "
                      "Ollama, TGI, OpenAI). `fake`: a deterministic scripted model for tests.",
                      choices=("embedded", "openai", "fake"))
    mode: str = _f("completion", "`completion`: the model continues a numbered few-shot list (right for "
                   "base models such as the embedded default). `chat`: instructions as chat messages "
                   "(right for instruction-tuned endpoints).", choices=("completion", "chat"))
    structured_output: bool = _f(False, "In `chat` mode, ask the endpoint for JSON matching each strategy's "
                                        "schema ({\"text\": ...}); replies that fail to parse or validate "
                                        "are retried, then recorded as failures with their raw text.")
    model: str = _f("", "Model name sent to the endpoint (required for `openai`: it is recorded in every "
                        "draft's provenance). For `embedded`: a path to a GGUF file, or empty for the bundled "
                        "Gemma 3 270M.")
    base_url: str = _f("", "Base URL of the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1. "
                           "Environment variable GOLDLOOP_LLM_BASE_URL overrides it.")
    base_urls: list[str] = _f([], "More endpoints serving the same model: requests are spread evenly over all of "
                                  "them, each with its own client, concurrency and limits (`[executor] backend = "
                                  "\"ray\"`: one Ray actor per endpoint).")
    api_key_env: str = _f("OPENAI_API_KEY", "Name of the environment variable that holds the API key "
                                            "(keys are never written to goldloop.toml).")
    concurrency: int = _f(8, "Requests in flight at once, per endpoint (`embedded`: parallel sequences).", minimum=1)
    http_client: str = _f("auto", "HTTP client for `openai`. `native`: goldloop's own HTTP/1.1 client "
                                  "(keep-alive, TLS, least CPU per request; no proxies). `aiohttp`: honours "
                                  "HTTP_PROXY / HTTPS_PROXY / NO_PROXY. `auto`: native, unless a proxy in the "
                                  "environment applies to base_url.", choices=("auto", "native", "aiohttp"))
    timeout_s: float = _f(120.0, "Seconds to wait for one reply before it counts as failed.", minimum=1)
    max_retries: int = _f(3, "Retries of a failed request (timeouts, broken connections, 429, 5xx, "
                             "replies that fail to parse or validate) before it is recorded as failed.",
                          minimum=0)
    backoff_s: float = _f(0.5, "First retry delay; it doubles with each retry, with random jitter, up to "
                               "max_backoff_s. A Retry-After header from the endpoint takes precedence.",
                          minimum=0)
    max_backoff_s: float = _f(30.0, "Longest delay between two tries of one request.", minimum=0)
    requests_per_minute: int = _f(0, "Most requests started per minute, per endpoint (0: no limit).", minimum=0)
    tokens_per_minute: int = _f(0, "Most tokens (prompt estimate + max_tokens) sent per minute "
                                   "(0: no limit).", minimum=0)
    breaker_failures: int = _f(8, "Consecutive connection failures, timeouts or 5xx replies after which "
                                  "the endpoint counts as down: requests pause instead of failing.",
                               minimum=1)
    breaker_cooldown_s: float = _f(15.0, "Seconds the circuit breaker waits before letting one probe "
                                         "request through to a down endpoint.", minimum=0)
    breaker_give_up_s: float = _f(600.0, "Seconds an endpoint may stay down before the run stops and "
                                         "records the remaining requests as failed (run again to resume).",
                                  minimum=0)
    threads: int = _f(0, "CPU threads for `embedded` (0: all cores).", minimum=0)
    context_per_sequence: int = _f(1024, "Context tokens per parallel sequence for `embedded`.", minimum=256)
    fake_delay_s: float = _f(0.0, "For `fake`: seconds each reply takes (to test interruption).", minimum=0)
    repeat_penalty: float = _f(1.1, "Penalty on tokens already in the recent text. 1.0 is neutral; sent only "
                                    "when not 1.0. It keeps drafts out of repetition loops (\"the sda sda "
                                    "sda\"): the default model loops in 45 % of drafts with neither it nor DRY, "
                                    "7 % with 1.1 alone, 1 % with 1.1 and dry_multiplier 0.8. An endpoint that "
                                    "refuses it and the dry_ fields (OpenAI's own API) needs repeat_penalty = "
                                    "1.0 and dry_multiplier = 0.",
                               minimum=0.1, maximum=5.0)
    presence_penalty: float = _f(0.0, "Flat penalty on every token already generated. 0 is neutral; sent only "
                                      "when not 0.", minimum=-2.0, maximum=2.0)
    frequency_penalty: float = _f(0.0, "Penalty that grows with how often a token was already generated. 0 is "
                                       "neutral; sent only when not 0.", minimum=-2.0, maximum=2.0)
    dry_multiplier: float = _f(0.8, "Strength of DRY (\"don't repeat yourself\"): a penalty on tokens that "
                                    "would extend a sequence already in the text. 0 is neutral (DRY off); sent "
                                    "only when not 0, and the three dry_ keys below with it. With 0.8 and "
                                    "repeat_penalty 1.1 the default model's drafts loop 1 % of the time, 45 % "
                                    "with neither (and it writes 103 tokens/s, against 78). An endpoint that "
                                    "refuses the dry_ fields (OpenAI's own API) needs dry_multiplier = 0 and "
                                    "repeat_penalty = 1.0.",
                               minimum=0.0, maximum=10.0)
    dry_base: float = _f(1.75, "DRY: how fast its penalty grows with the length of the repeat (llama.cpp's "
                               "default 1.75). Sent only when dry_multiplier is not 0.",
                         minimum=1.0, maximum=10.0)
    dry_allowed_length: int = _f(2, "DRY: repeats up to this many tokens go unpenalised (llama.cpp's default "
                                    "2). Sent only when dry_multiplier is not 0.", minimum=0)
    dry_penalty_last_n: int = _f(256, "DRY: recent tokens searched for repeats (0: none, DRY off). Sent only "
                                      "when dry_multiplier is not 0. -1 (the whole context) is not offered: "
                                      "some llama.cpp builds refuse it.", minimum=0)
    min_p: float = _f(0.0, "Drops tokens less likely than this share of the likeliest one. 0 is neutral: not "
                           "sent, so the endpoint's own default applies (llama.cpp's: 0.05); sent only when "
                           "not 0.", minimum=0.0, maximum=1.0)
    top_k: int = _f(0, "Samples from the this-many likeliest tokens only. 0 is neutral: not sent, so the "
                       "endpoint's own default applies (llama.cpp's: 40); sent only when not 0.", minimum=0)
    typical_p: float = _f(1.0, "Locally typical sampling: keeps the tokens closest to the expected surprise, "
                               "up to this probability mass. 1.0 is neutral; sent only when not 1.0.",
                          minimum=0.01, maximum=1.0)


@dataclass
class GenerateConfig:
    strategies: list[str] = _f(["paraphrase.v1"], "Strategies that draft candidates, by versioned name.")
    per_label: int = _f(12, "Candidates requested per label and strategy in each round.", minimum=1)
    seeds_per_prompt: int = _f(3, "Gold-train examples of the label shown in each prompt.", minimum=1)
    seed_words: int = _f(60, "Each seed example is cut to this many words in the prompt.", minimum=5)
    item_name: str = _f("Example", "What one example is called in the prompt (`Post`, `Ticket`, ...).")
    label_descriptions: dict = field(default_factory=dict, metadata={
        "help": "Optional plain-language description per label, shown in prompts: "
                "{ \"sci.space\" = \"posts about space flight\" }.", "choices": None, "min": None, "max": None})
    rules_must: list[str] = _f([], "Domain rules every candidate must follow; shown in every prompt, as data.")
    rules_must_not: list[str] = _f([], "Things no candidate may do or contain; shown in every prompt, as data.")
    vocabulary: list[str] = _f([], "Domain terms candidates should use correctly; shown in every prompt.")
    red_lines: list[str] = _f([], "Content that must never appear (e.g. real customer names); shown in every "
                                  "prompt, as data.")
    targets: dict = field(default_factory=dict, metadata={
        "help": "Weaknesses `targeted.v1` aims at, per label: { \"sci.space\" = \"confused with "
                "sci.electronics: satellite radio posts\" }. Descriptions of weaknesses only: never paste "
                "held-out text here.", "choices": None, "min": None, "max": None})
    temperature: float = _f(0.9, "Sampling temperature.", minimum=0.0, maximum=2.0)
    top_p: float = _f(0.95, "Nucleus sampling mass.", minimum=0.0, maximum=1.0)
    max_tokens: int = _f(90, "Most tokens generated per candidate.", minimum=1)
    pair_max_tokens: int = _f(384, "`generate` task: most tokens of one drafted pair (prompt and response).",
                              minimum=16)


@dataclass
class FilterConfig:
    min_words: int = _f(5, "Candidates with fewer words are dropped (`length.v1`).", minimum=0)
    max_words: int = _f(400, "Candidates with more words are dropped (`length.v1`).", minimum=1)
    required_patterns: list[str] = _f([], "Regular expressions every candidate must match (`patterns.v1`), "
                                          "e.g. an order number format.")
    forbidden_patterns: list[str] = _f([], "Regular expressions no candidate may match (`patterns.v1`), e.g. "
                                           "\"as an ai\" or e-mail addresses.")
    language: str = _f("", "Language every candidate must be in, as an ISO 639-1 code such as `en` "
                           "(`language.v1`; needs the `language` extra). Empty: not checked.")
    plugins: list[str] = _f([], "Python modules to import before filtering; they register filters of their "
                                "own with `goldloop.filters.register`.")
    extra: list[str] = _f([], "Registered filters to run besides the built-in ones, by versioned name.")
    near_dup_threshold: float = _f(0.8, "Estimated Jaccard similarity of word sets (MinHash + LSH) at which "
                                        "a candidate is a near-duplicate (`near_dup.v1`, `leakage.v1`).",
                                   minimum=0.1, maximum=1.0)
    semantic_dup_threshold: float = _f(0.95, "Cosine similarity of embeddings at which a candidate is a semantic "
                                             "duplicate (`semantic_dup.v1`, `leakage.v1`).",
                                       minimum=0.5, maximum=1.0)
    pair_quality_quantile: float = _f(0.05, "`generate` task: a draft is kept when its response-prompt embedding cosine "
                                            "reaches this quantile of the gold pairs' (`pair_quality.v1`).",
                                      minimum=0.0, maximum=1.0)
    min_distinct_bigrams: float = _f(0.8, "Candidates whose distinct-bigram ratio is lower are dropped "
                                          "as degenerate repetition (`repetition.v1`).",
                                     minimum=0.0, maximum=1.0)
    label_consistency: str = _f("drop", "What `label_consistency.v1` does with a candidate whose text a "
                                "gold-trained classifier places under another label: `drop`, `flag` "
                                "(kept, marked label-doubt for review) or `off`.",
                                choices=("drop", "flag", "off"))
    min_knn_margin: float = _f(-0.1, "`label_consistency.v1` also doubts a candidate whose nearest gold-train "
                                      "record of another label is closer (cosine) than its nearest one of its "
                                      "own label by more than this (-0.1: 0.1 closer). -2 turns it off.",
                               minimum=-2.0, maximum=1.0)
    judge: bool = _f(False, "Run `judge.v1`: an LLM grades each candidate against judge_rubric with a "
                            "structured verdict. Worth it only with a capable endpoint ([llm] backend = "
                            "\"openai\", mode = \"chat\"); models under 1B are near chance as judges.")
    judge_rubric: str = _f("The text is a realistic, correct example of its label: on topic, coherent, not a "
                           "copy of the examples, and free of anything the rules forbid.",
                           "What `judge.v1` asks the judge to check.")
    collapse_margin: float = _f(0.3, "`collapse_guard.v1` drops a label's candidates when their distinct-2 or "
                                     "embedding dispersion is lower than the gold set's (both measured at the "
                                     "same size) by more than this share (0.3: 30 % lower). 1 turns the guard off.", minimum=0.0, maximum=1.0)
    max_label_rank: int = _f(3, "`label_consistency.v1` keeps a candidate when its stated label is among "
                                "the classifier's top this-many labels.", minimum=1)


@dataclass
class ReviewConfig:
    unreviewed_may_train: bool = _f(True, "Whether candidates that passed every filter but no human has "
                                          "reviewed may enter a training snapshot. Set false to require "
                                          "human review of every synthetic row.")
    reviewer: str = _f("", "Reviewer name stored with decisions (default: the login name).")


@dataclass
class ServeConfig:
    host: str = _f("127.0.0.1", "Address `goldloop serve` listens on (0.0.0.0: every interface; put a TLS "
                                "proxy in front when reviewers connect over a network).")
    port: int = _f(8700, "Port `goldloop serve` listens on.", minimum=1, maximum=65535)
    overlap: int = _f(1, "Reviewers who each decide every queued item. 1: each item goes to one reviewer; "
                         "2 or more: items are served to that many different reviewers, for agreement "
                         "figures (Cohen's kappa per reviewer pair).", minimum=1, maximum=10)
    lease_seconds: float = _f(300.0, "How long an item served to a reviewer stays reserved for them; the "
                                     "lease is renewed while their page is open and released on a decision.",
                              minimum=5.0)
    prefetch: int = _f(8, "Items the review page keeps ready locally, so a key press never waits for the "
                          "network.", minimum=1, maximum=100)
    pairs_per_label: int = _f(0, "Pairwise items queued per label and round: two candidates of the same label "
                                 "(from the same gold seeds where possible) for an A-vs-B preference, which "
                                 "becomes a DPO pair. 0: no pairwise items.", minimum=0)
    rank_size: int = _f(4, "Candidates of one label shown together on the review page's ranking screen "
                           "(key r); each ordering becomes reward-model pairs.", minimum=2, maximum=20)
    session_hours: float = _f(12.0, "Hours a login lasts.", minimum=0.1)
    login_attempts: int = _f(5, "Failed logins per user name and per address within a minute before further "
                                "attempts are refused until the minute is over.", minimum=1)
    max_body_bytes: int = _f(8 * 1024 * 1024, "Largest request body the review server reads, on every route; a "
                                              "bigger one is refused (413) before anything parses it. The "
                                              "largest a page sends is a bulk repair over 100,000 record ids "
                                              "(about 4 MB).", minimum=65536)


@dataclass
class EmbedConfig:
    backend: str = _f("minilm", "`minilm`: all-MiniLM-L6-v2 installed with goldloop (offline). "
                      "`fake`: a hashing embedder for tests.", choices=("minilm", "fake"))
    batch_size: int = _f(32, "Texts embedded per batch.", minimum=1)
    max_tokens: int = _f(256, "Texts are truncated to this many tokens before embedding.", minimum=8)


@dataclass
class TrainConfig:
    synthetic_weight: float = _f(0.1, "Training weight of a synthetic or edited row (gold rows weigh 1). On 20 "
                                      "Newsgroups (5 seeds, 10 gold posts per label, ~130 reviewer-accepted drafts "
                                      "each) the drafts' unseen-test lift was +0.0045 at 0.05, +0.0071 at 0.1, "
                                      "+0.0090 at 0.2 and +0.0091 at 0.3, but only at 0.05 and 0.1 above zero in "
                                      "every seed; the held-out set the loop decides on was best at 0.1.",
                                 minimum=0.0, maximum=1.0)
    C: float = _f(10.0, "Inverse regularisation strength of the logistic-regression head (both classifiers).",
                  minimum=1e-6)
    classifier: str = _f("linear", "The `classify` trainer. `linear`: logistic regression on frozen MiniLM "
                         "embeddings (seconds on a CPU; embeddings cached). `setfit`: MiniLM first "
                         "fine-tuned on same-label / other-label pairs of the training rows (SetFit), then "
                         "the same head; minutes on a CPU, and held-out text is re-embedded with each "
                         "trained model. See bench/trainers.py for the comparison.",
                         choices=("linear", "setfit"))
    setfit_iterations: int = _f(2, "`setfit`: pairs drawn per training row (one same-label, one other-label "
                                   "pair each), like SetFit's num_iterations.", minimum=1)
    setfit_epochs: int = _f(1, "`setfit`: passes over the drawn pairs.", minimum=1)
    setfit_batch_size: int = _f(16, "`setfit`: pairs per optimiser step.", minimum=1)
    setfit_learning_rate: float = _f(2e-5, "`setfit`: AdamW learning rate of the MiniLM fine-tuning.",
                                     minimum=1e-8, maximum=1e-2)
    setfit_max_tokens: int = _f(128, "`setfit`: texts are cut to this many tokens while fine-tuning and "
                                     "predicting.", minimum=8)


@dataclass
class TrlConfig:
    """`goldloop train`: TRL fine-tuning of a generator with a LoRA adapter; each key is also an option."""

    method: str = _f("sft", "TRL trainer: `sft` (prompt/completion), `dpo` (prompt/chosen/rejected) or `kto` "
                            "(prompt/completion/label); the export must have the same format.",
                     choices=("sft", "dpo", "kto"))
    base_model: str = _f("", "Causal language model to adapt: a local folder or a Hugging Face model id. "
                             "Empty: it must be given on the command line.")
    max_steps: int = _f(200, "Optimiser steps to train for.", minimum=1)
    learning_rate: float = _f(0.0, "Learning rate (0: 2e-4 for sft, 5e-5 for dpo and kto).", minimum=0.0)
    batch_size: int = _f(4, "Rows per device and step (kto needs at least 2).", minimum=1)
    gradient_accumulation: int = _f(1, "Batches whose gradients add up to one optimiser step.", minimum=1)
    max_length: int = _f(1024, "Longest prompt + completion in tokens; longer rows are truncated.", minimum=8)
    beta: float = _f(0.1, "dpo / kto: how strongly the adapter is held to the base model.", minimum=1e-6)
    lora_r: int = _f(16, "LoRA rank.", minimum=1)
    lora_alpha: int = _f(32, "LoRA scaling numerator (the update is scaled by lora_alpha / lora_r).", minimum=1)
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.", minimum=0.0, maximum=0.9)
    save_steps: int = _f(0, "Checkpoint every this many steps (0: only the final adapter); a rerun resumes "
                            "from the last.", minimum=0)
    seed: int = _f(0, "Seed for data order and adapter init.")


@dataclass
class EvaluateConfig:
    bootstrap: int = _f(1000, "Bootstrap resamples of the held-out set for the confidence interval of the "
                              "macro-F1 change.", minimum=0)
    confidence: float = _f(0.95, "Confidence level of that interval.", minimum=0.5, maximum=0.999)


@dataclass
class LoopConfig:
    candidates_per_round: int = _f(240, "Candidates each `goldloop loop` round plans, over all labels and "
                                        "strategies.", minimum=1)
    share_targeted: float = _f(0.5, "Share of a round's candidates for `targeted.v1` on confused label pairs.",
                               minimum=0.0, maximum=1.0)
    share_edge_case: float = _f(0.25, "Share for `edge_case.v1` on labels with low held-out recall.",
                                minimum=0.0, maximum=1.0)
    share_paraphrase: float = _f(0.25, "Share for `paraphrase.v1` on thin labels (few gold-train records). "
                                       "A strategy with nothing to aim at gives its share to the others.",
                                 minimum=0.0, maximum=1.0)
    min_per_line: int = _f(2, "Fewest candidates a plan line asks for; weaker lines are left out instead.",
                           minimum=1)
    max_confused_pairs: int = _f(10, "Most confused label pairs `targeted.v1` aims at in one round.", minimum=1)
    min_confusions: int = _f(2, "A label pair counts as confused when held-out records of one label were "
                                "predicted as the other at least this many times (or gold-train records "
                                "in cross-validation).", minimum=1)
    low_recall_margin: float = _f(0.1, "A label is low-recall when its held-out recall is below the mean over "
                                       "labels by more than this.", minimum=0.0, maximum=1.0)
    thin_label_size: int = _f(20, "A label with fewer gold-train records than this is thin.", minimum=1)
    cv_folds: int = _f(5, "Folds of the cross-validated predictions on gold-train.", minimum=2, maximum=20)
    max_drop: float = _f(0.01, "A round is rejected when held-out macro-F1 falls below the kept model's by "
                               "more than this, or when the whole bootstrap interval of the change is "
                               "below zero.", minimum=0.0, maximum=1.0)
    min_gain: float = _f(0.005, "A kept round counts as a gain when held-out macro-F1 rises by at least this "
                                "over the kept model.", minimum=0.0, maximum=1.0)
    patience: int = _f(2, "Rounds in a row without a gain after which `goldloop loop` stops.", minimum=1)
    narrowing_margin: float = _f(0.1, "A round is flagged as narrowing when the accumulated synthetic rows' "
                                      "distinct-2, dispersion or gold-cluster coverage falls by more than this "
                                      "share (0.1: 10 %) from the last kept round.", minimum=0.0, maximum=1.0)
    reject_narrowing: bool = _f(False, "Reject a narrowing round instead of only flagging it.")
    suite_gate: bool = _f(False, "Reject a round whose candidate model passes fewer cases of a stress-test suite "
                                 "(`goldloop suite`) than the kept model by more than `suite_max_drop`. Off: "
                                 "suites are scored and reported, never part of the keep-or-stop call.")
    suite_max_drop: float = _f(0.05, "`suite_gate`: the largest fall in a suite's pass rate a kept round may "
                                     "have (0.05: 5 points).", minimum=0.0, maximum=1.0)
    review_budget: int = _f(0, "Reviewer decisions per loop round, split between the sources (LLM drafts, pool "
                               "suggestions from `goldloop ingest --split pool` records). With a budget, a draft "
                               "trains only once a reviewer accepted or edited it. 0: no budget (drafts only, "
                               "[review] unreviewed_may_train decides).", minimum=0)
    pool_share: float = _f(0.75, "The pool's share of the first round's budget; later rounds move it toward the "
                                 "source whose new rows lifted held-out macro-F1 more per decision (over 15 20 Newsgroups "
                                 "rounds a pool decision lifted it ~10x more than a draft decision).", minimum=0.0, maximum=1.0)
    min_source_share: float = _f(0.1, "Least share of the budget a source keeps while it has candidates, so its "
                                      "lift stays measured.", minimum=0.0, maximum=0.5)
    budget_step: float = _f(1.0, "How far one round moves the shares toward the measured lift per decision "
                                 "(1: all the way; the summed window already damps noise).", minimum=0.0, maximum=1.0)
    budget_window: int = _f(0, "Rounds whose lift per decision sets the next split: their lifts and decisions are "
                               "summed, so one noisy round does not swing it. 0: every budgeted round so far; 1: the "
                               "last round only.", minimum=0)


@dataclass
class ExportConfig:
    license: str = _f("other", "License written in an export's dataset card (a Hugging Face license id such "
                               "as `apache-2.0`, or `other`).")
    prompt_mode: str = _f("generation", "Prompt of the sft, dpo, kto and reward rows. `generation`: the exact "
                                        "prompt the generator received (an edit takes its parent's); "
                                        "`instruction`: a short instruction built from the label.",
                          choices=("generation", "instruction"))
    include_gold: bool = _f(True, "Add the snapshot's gold-train rows to sft, sft-messages, openai-sft and kto "
                                  "(label true) exports as data, with their label's instruction prompt.")


@dataclass
class Config:
    project: ProjectConfig = field(default_factory=ProjectConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trl: TrlConfig = field(default_factory=TrlConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    suggest: SuggestConfig = field(default_factory=SuggestConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_FILE) -> "Config":
        """Build a validated config; every error names the key and what is allowed."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name not in sections:
                raise ConfigError(f"{source}: unknown section [{name}]{suggest(name, sections)}")
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{name}] must be a table of settings, got {value!r}")
            kwargs[name] = build_section(sections[name].default_factory, name, value, source)  # type: ignore[misc]
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, project_dir: Path) -> "Config":
        path = Path(project_dir) / CONFIG_FILE
        if not path.exists():
            raise ConfigError(f"no {CONFIG_FILE} in {project_dir}; run `goldloop init` there first "
                              "or pass --project DIR")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
        return cls.from_dict(data, source=path.name)

    def save(self, project_dir: Path) -> Path:
        path = Path(project_dir) / CONFIG_FILE
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)
        return path

"""Do the [llm] sampling controls make better drafts? Loops, on-label share, diversity and speed.

The demo's project is built as ``goldloop demo`` builds it (20 Newsgroups, real posts:
``demo_config``, ``build_demo_project``), and its round-1 prompts are planned twice by
``goldloop.generate.plan_requests``, with ``--per-label`` drafts per label for the first
``--labels`` labels by name:

- before: every sampling control neutral, i.e. the requests goldloop sent before the
  controls existed;
- after: the configured defaults of ``[llm]`` (``repeat_penalty = 1.1``).

The prompts are the same in both conditions; only the controls differ. Both go to the same
loaded model in the same run, before first, after a short warm-up that neither is timed on.
Each reply is parsed and normalised as ``goldloop generate`` does it.

Figures per condition (suffix ``_before`` / ``_after``):
- loop_share: share of drafts whose distinct-bigram ratio is below ``[filter]
  min_distinct_bigrams``, the test of the ``repetition.v1`` filter (its own function).
- on_label: share of drafts that a classifier trained on every real 20 Newsgroups training
  post (TF-IDF of word 1-2-grams + logistic regression) assigns to the draft's label;
  ``classifier_accuracy`` is its accuracy on the deduplicated test split. The gold posts shown
  in the prompts are among its training posts, so a draft that copies them counts as on-label.
- on_label_non_loop: the same, among drafts that are not loops.
- distinct_2: distinct word bigrams / all word bigrams, over every draft of the condition.
- tokens_per_s: generated tokens / wall seconds of the condition (a loop runs to max_tokens,
  so the two conditions need not generate the same number of tokens).
- mean_words, failed, seconds.

The last line is one JSON object with the figures.

Usage (a reduced run: 60 prompts per condition, a few minutes on two cores; ``--backend
fake`` checks the script in seconds):

    python bench/generation_quality.py --per-label 3 --labels 20
    python bench/generation_quality.py --backend fake
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldloop.config import Config
from goldloop.demo import build_demo_project, demo_config, newsgroups_pools
from goldloop.diversity import distinct_n
from goldloop.filters import distinct_bigram_ratio
from goldloop.generate import PlannedRequest, get_strategy, plan_requests
from goldloop.llm import CONTROL_NAMES, LLM, NEUTRAL_CONTROLS, CompletionRequest, make_llm, sampling_controls
from goldloop.records import normalize_text
from goldloop.store import open_store


@dataclass
class Condition:
    """What one condition's requests came back as."""

    drafts: list[tuple[str, str]] = field(default_factory=list)     # (text as stored, label)
    failed: int = 0
    tokens: int = 0
    seconds: float = 0.0


def neutral(cfg: Config) -> Config:
    """A copy of ``cfg`` with every sampling control at its neutral value (DRY off)."""
    out = dataclasses.replace(cfg)
    out.llm = dataclasses.replace(cfg.llm, **NEUTRAL_CONTROLS)
    assert sampling_controls(out.llm) == {}
    return out


def train_classifier() -> tuple[Any, float]:
    """TF-IDF (word 1-2-grams) + logistic regression on every real training post; its accuracy
    on the test split (deduplicated against train by ``newsgroups_pools``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pools = newsgroups_pools()
    texts = {split: [t for label in sorted(pools[split]) for t in pools[split][label]] for split in pools}
    labels = {split: [label for label in sorted(pools[split]) for _ in pools[split][label]] for split in pools}
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=300_000),
                          LogisticRegression(C=10.0, max_iter=1000))
    model.fit(texts["train"], labels["train"])
    accuracy = float((model.predict(texts["test"]) == labels["test"]).mean())
    return model, accuracy


def run_condition(llm: LLM, cfg: Config, planned: list[PlannedRequest]) -> Condition:
    """Send ``planned``; the drafts as ``goldloop generate`` would store them, with wall time."""
    by_key = {p.request.key: p for p in planned}
    out = Condition()
    started = time.perf_counter()
    for result in llm.complete([p.request for p in planned]):
        plan = by_key[result.key]
        if not result.ok:
            out.failed += 1
            continue
        out.tokens += result.tokens_out
        text = get_strategy(plan.strategy).parse(result.text or "", cfg.generate.item_name,
                                                 result.extra.get("parsed"))
        out.drafts.append((normalize_text(text, cfg.ingest.normalize), plan.label))
    out.seconds = time.perf_counter() - started
    return out


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def figures(run: Condition, classifier: Any, floor: float) -> dict[str, Any]:
    """A condition's loop share, on-label shares, distinct-2, speed and size."""
    texts = [text for text, _ in run.drafts]
    loops = [distinct_bigram_ratio(text) < floor for text in texts]
    predicted = list(classifier.predict(texts)) if texts else []
    on = [bool(p == label) for p, (_, label) in zip(predicted, run.drafts)]
    return {"loop_share": _share(loops), "on_label": _share(on),
            "on_label_non_loop": _share([o for o, loop in zip(on, loops) if not loop]),
            "distinct_2": round(distinct_n(texts, 2), 4),
            "tokens_per_s": round(run.tokens / run.seconds, 1) if run.seconds else None,
            "mean_words": round(sum(len(t.split()) for t in texts) / len(texts), 1) if texts else None,
            "failed": run.failed, "seconds": round(run.seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=4, help="Drafts per label and condition.")
    parser.add_argument("--labels", type=int, default=20, help="Labels used (the first, by name).")
    parser.add_argument("--backend", default="embedded", choices=("embedded", "fake"), help="LLM backend.")
    parser.add_argument("--work", type=Path, default=None,
                        help="Folder for the demo project (default: a temporary one).")
    parser.add_argument("--control", action="append", default=[], metavar="NAME=VALUE",
                        help="Set one [llm] sampling control for the 'after' condition (repeatable); the others "
                             "keep their defaults. E.g. --control dry_multiplier=0.8")
    args = parser.parse_args()

    started = time.perf_counter()
    classifier, accuracy = train_classifier()
    print(f"classifier: {accuracy:.3f} accuracy on the test split ({time.perf_counter() - started:.0f} s)",
          flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        after = demo_config(candidates_per_label=args.per_label)
        after.llm.backend = args.backend
        after.embed.backend = "fake"                # nothing here embeds; keep MiniLM unloaded
        for item in args.control:
            name, _, value = item.partition("=")
            if name not in CONTROL_NAMES or not value:
                parser.error(f"--control {item!r}: give NAME=VALUE with NAME one of {', '.join(CONTROL_NAMES)}")
            setattr(after.llm, name, type(getattr(after.llm, name))(float(value)))
        store = open_store(work)
        build_demo_project(work, store, after)
        before = neutral(after)
        llm = make_llm(after.llm)
        try:
            chosen = set(sorted({p.label for p in plan_requests(store, after, llm, 1)})[:args.labels])
            plans = {name: [p for p in plan_requests(store, cfg, llm, 1) if p.label in chosen]
                     for name, cfg in (("before", before), ("after", after))}
            prompts = [p.request.prompt for p in plans["before"]]
            if prompts != [p.request.prompt for p in plans["after"]]:
                raise RuntimeError("the two conditions planned different prompts; only their controls may differ")
            warm = [CompletionRequest(key=f"warm-{i}", prompt=prompts[i % len(prompts)], max_tokens=8)
                    for i in range(min(after.llm.concurrency, len(prompts)))]
            list(llm.complete(warm))
            runs: dict[str, Condition] = {}
            for name, cfg in (("before", before), ("after", after)):
                runs[name] = run_condition(llm, cfg, plans[name])
                print(f"{name}: {len(runs[name].drafts)} drafts in {runs[name].seconds:.0f} s", flush=True)
        finally:
            llm.close()
            store.close()

    floor = after.filter.min_distinct_bigrams
    out: dict[str, object] = {"backend": args.backend, "model": llm.model, "labels": len(chosen),
                              "per_label": args.per_label, "prompts": len(prompts),
                              "controls_after": sampling_controls(after.llm), "min_distinct_bigrams": floor,
                              "classifier_accuracy": round(accuracy, 4)}
    for name, run in runs.items():
        for key, value in figures(run, classifier, floor).items():
            out[f"{key}_{name}"] = value
    for name in ("before", "after"):
        print(f"{name}: {out[f'loop_share_{name}']} loop share, {out[f'on_label_{name}']} on-label, "
              f"distinct-2 {out[f'distinct_2_{name}']}, {out[f'tokens_per_s_{name}']} tokens/s", flush=True)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

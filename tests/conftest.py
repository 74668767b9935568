"""Shared fixtures: a small real-looking data set and projects wired to the fake backends."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from goldloop.config import Config
from goldloop.store import Store, open_store

VOCAB = {
    "billing": "invoice charge refund payment card bill overcharged receipt price subscription",
    "outage": "down offline error server crash unavailable timeout outage broken connection",
    "account": "password login reset username email locked account signin profile access",
}


def make_rows(per_label: int = 20, seed: int = 0) -> list[tuple[str, str]]:
    """Distinct short texts per label, drawn from label-specific vocabularies."""
    rng = random.Random(seed)
    rows = []
    for label, words in VOCAB.items():
        pool = words.split()
        seen = set()
        while len([r for r in rows if r[1] == label]) < per_label:
            text = "my " + " ".join(rng.choice(pool) for _ in range(9)) + " please help"
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def fake_config(**sections: dict) -> Config:
    data = {"project": {"name": "test"}, "llm": {"backend": "fake"}, "embed": {"backend": "fake"},
            "generate": {"per_label": 4}, "evaluate": {"bootstrap": 200}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config.from_dict(data)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Config, Store]:
    """An initialised project with fake backends and 60 gold rows ingested (20 % held out)."""
    from goldloop.ingest import ingest_file

    cfg = fake_config()
    cfg.save(tmp_path)
    store = open_store(tmp_path)
    ingest_file(store, cfg, write_csv(tmp_path / "gold.csv", make_rows()))
    yield tmp_path, cfg, store
    store.close()

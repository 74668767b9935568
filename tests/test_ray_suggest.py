"""The pool's suggestion stage on Ray: the picks of the local path, from shards scored by actors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.errors import StageError
from goldloop.ingest import ingest_file
from goldloop.records import Decision, now
from goldloop.store import open_store
from goldloop.suggest import suggest, suggestions

from .conftest import fake_config, make_rows, write_csv


def _project(base: Path, per_label: int, **suggest_cfg):
    """Gold-train, held-out and a pool of three labels; held-out texts added after the pool was
    ingested, so the pool holds an exact and a near copy of held-out text."""
    rows = make_rows(per_label=per_label, seed=5)
    by = {label: [r for r in rows if r[1] == label] for label in ("billing", "outage", "account")}
    cfg = fake_config(suggest={"random_share": 0.2, **suggest_cfg})
    base.mkdir(parents=True)
    cfg.save(base)
    store = open_store(base)
    ingest_file(store, cfg, write_csv(base / "gold.csv", [r for rs in by.values() for r in rs[:6]]), split="train")
    ingest_file(store, cfg, write_csv(base / "held.csv", [r for rs in by.values() for r in rs[6:16]]), split="heldout")
    pool = [r for rs in by.values() for r in rs[16:]]
    ingest_file(store, cfg, write_csv(base / "pool.csv", [(t, "") for t, _ in pool], header=("text", "note")),
                split="pool")
    stored = store.records(origin="pool", split="pool")
    words = stored[3].text.split()
    late = [(stored[1].text, "billing"), (" ".join(words[:-1] + ["now"]), "outage")]
    ingest_file(store, cfg, write_csv(base / "late.csv", late), split="heldout")
    store.close()
    return cfg


def _run(base: Path, cfg, number: int, budget: int):
    store = open_store(base)
    try:
        gold = store.records(origin="gold", split="train")
        report = suggest(store, cfg, number, budget, CachedEmbedder(HashingEmbedder(), store), gold)
        made = sorted((r.provenance.parents[0], r.label, r.provenance.strategy,
                       json.dumps({k: v for k, v in r.provenance.params.items() if k != "created_at"}, sort_keys=True))
                      for r in store.records(origin="pool") if r.round == number and r.provenance.parents)
        event = store.events("suggest")[-1][2] if report.eligible else {}
        return report, made, event.get("excluded_ids")
    finally:
        store.close()


def _twins(tmp_path: Path, per_label: int, **suggest_cfg):
    cfg = _project(tmp_path / "local", per_label, **suggest_cfg)
    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    ray_cfg = fake_config(suggest={"random_share": 0.2, **suggest_cfg},
                          executor={"backend": "ray", "shared_dir": str(tmp_path / "shared")})
    return cfg, ray_cfg


def _same(a, b) -> None:
    ra, ma, xa = a
    rb, mb, xb = b
    assert xa == xb
    keys = ("pool", "answered", "heldout_excluded", "eligible", "picked", "by_reason", "by_label", "agreement",
            "self_trained")
    assert {k: ra.to_json()[k] for k in keys} == {k: rb.to_json()[k] for k in keys}
    assert ma == mb


def test_ray_picks_and_labels_what_the_local_path_does(tmp_path: Path, local_ray) -> None:
    cfg, ray_cfg = _twins(tmp_path, 60, self_training=True, self_training_model="selection", self_training_max=12,
                          self_training_confidence=0.5)
    local, on_ray = _run(tmp_path / "local", cfg, 1, 15), _run(tmp_path / "ray", ray_cfg, 1, 15)
    _same(local, on_ray)
    report = on_ray[0]
    assert report.heldout_excluded >= 2 and report.eligible + report.heldout_excluded == report.pool
    assert report.picked == 15 and report.self_trained > 0
    assert set(report.by_reason) == {"random", "typical", "uncertain"}
    assert list((tmp_path / "shared").iterdir()) == []            # the shards went with the stage
    # round 2, after reviewers answered some of round 1: the answered rows leave the open pool
    for base in ("local", "ray"):
        store = open_store(tmp_path / base)
        for k, rec in enumerate(sorted(suggestions(store, 1), key=lambda r: r.id)[:6]):
            store.add_decision(Decision(rec.id, "accept" if k % 3 else "reject", "ann", 1, created_at=now()))
        store.close()
    local, on_ray = _run(tmp_path / "local", cfg, 2, 20), _run(tmp_path / "ray", ray_cfg, 2, 20)
    _same(local, on_ray)
    assert on_ray[0].answered == 6


def test_a_label_past_pool_sample_is_clustered_on_a_sample_and_every_row(tmp_path: Path, local_ray,
                                                                         monkeypatch) -> None:
    from goldloop._suggest_ray import PoolPicker

    sampled = []
    original = PoolPicker.typical_sampled
    monkeypatch.setattr(PoolPicker, "typical_sampled", lambda self, t, k, sample, skip: sampled.append(len(sample))
                        or original(self, t, k, sample, skip))
    cfg, ray_cfg = _twins(tmp_path, 300, random_share=0.0, typical_share=0.5, heldout_similarity=1.0)
    ray_cfg.suggest.heldout_similarity = 1.0
    ray_cfg.executor.pool_sample = 100                   # each label has ~280 rows: the sampled path
    first = _run(tmp_path / "ray", ray_cfg, 1, 24)
    assert sampled and set(sampled) == {100}
    report, made, _ = first
    assert report.picked == 24 and len({m[0] for m in made}) == 24
    typical = [json.loads(m[3]) for m in made if json.loads(m[3])["picked_as"] == "typical"]
    assert typical and all(p["why"].startswith("typical of ") for p in typical)
    sizes = [int(p["why"].split("cluster of ")[1].rstrip(")")) for p in typical]
    assert sum(sizes) <= report.eligible and min(sizes) >= 1
    # the same round from a fresh copy gives the same picks: seeded sample, seeded k-means
    shutil.rmtree(tmp_path / "ray")
    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    again = _run(tmp_path / "ray", ray_cfg, 1, 24)
    assert again[1] == made
    # and with no label past the sample size, the local picks
    ray_cfg.executor.pool_sample = 20000
    shutil.rmtree(tmp_path / "ray")
    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    _same(_run(tmp_path / "local", cfg, 1, 24), _run(tmp_path / "ray", ray_cfg, 1, 24))


def test_trainer_self_training_on_ray_is_refused_with_what_to_set(tmp_path: Path, local_ray) -> None:
    _, ray_cfg = _twins(tmp_path, 30, self_training=True, self_training_model="trainer")
    with pytest.raises(StageError, match='self_training_model = "selection"'):
        _run(tmp_path / "ray", ray_cfg, 1, 5)


def test_an_empty_shard_reads_as_no_rows_of_the_right_width() -> None:
    import numpy as np
    import pyarrow as pa

    from goldloop.filters._ray_work import _vectors, fixed_column

    empty = pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(0, np.float32)), 4)})
    assert fixed_column(empty, "vector").shape == (0, 4) and _vectors(empty).shape == (0, 4)
    full = pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 4)})
    assert _vectors(full.slice(1, 2)).tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]     # a slice reads its own rows

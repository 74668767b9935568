"""Shared fixtures: a small real-looking data set and projects wired to the fake backends."""

from __future__ import annotations

import csv
import os
import random
import uuid
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


def sent_text(request) -> str:
    """The text a request really sends: its prompt in completion mode, every message's content in chat mode.

    A leak check must read this, not ``request.prompt`` alone: in chat mode ``prompt`` is None.
    """
    if (request.prompt is None) == (request.messages is None):
        raise AssertionError(f"request {request.key} must carry exactly one of prompt and messages")
    if request.prompt is not None:
        return request.prompt
    return "\n".join(m["content"] for m in request.messages)


def seed_opening(rec, cfg: Config) -> str:
    """The part of a seed record a prompt carries: its first ``[generate] seed_words`` words."""
    return " ".join(rec.text.split()[: cfg.generate.seed_words])


def heldout_sent(store: Store, cfg: Config, requests) -> list[str]:
    """Ids of held-out records whose opening is in the text any of ``requests`` sent, in either mode."""
    sent = [sent_text(r) for r in requests]
    return [rec.id for rec in store.records(origin="gold", split="heldout")
            if any(seed_opening(rec, cfg) in text for text in sent)]


def assert_seeds_sent(store: Store, cfg: Config, requests) -> None:
    """Every synthetic record's gold-train seeds are in the text its request sent.

    Shows a leak check over the sent text reads the place seeds go, so it is not vacuous.
    """
    sent = {r.key: sent_text(r) for r in requests}
    assert sent and all(text.strip() for text in sent.values()), "no request sent any text"
    train_ids = {r.id for r in store.records(origin="gold", split="train")}
    synthetic = store.records(origin="synthetic")
    assert synthetic, "no synthetic record to trace back to its request"
    for rec in synthetic:
        assert rec.provenance.parents and set(rec.provenance.parents) <= train_ids, rec
        for seed in store.records(ids=rec.provenance.parents):
            assert seed_opening(seed, cfg) in sent[rec.provenance.request_key], (rec.id, seed.id)


PG_ENV = "GOLDLOOP_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A database URL for a fresh, empty store: one SQLite file, then one new PostgreSQL database.

    PostgreSQL comes from ``GOLDLOOP_TEST_POSTGRES_URL`` (``scripts/test`` starts a server and sets
    it). Without it the PostgreSQL half is skipped, except under CI, where it fails.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: the store tests must also run on PostgreSQL in CI "
                        "(scripts/test starts a server with scripts/postgres)")
        pytest.skip(f"no PostgreSQL server: set {PG_ENV} (scripts/postgres start prints one)")
    import psycopg

    name = f"goldloop_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def any_store(store_url: str, tmp_path: Path):
    """An empty store on each database goldloop supports (see ``store_url``)."""
    store = open_store(tmp_path, url=store_url)
    yield store
    store.close()


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


@pytest.fixture
def team_project(store_url: str, tmp_path: Path) -> tuple[Path, Config, Store]:
    """Like ``project``, with the store named by ``[project] database_url``: once on SQLite, once
    on a PostgreSQL server (the team set-up)."""
    from goldloop.ingest import ingest_file

    cfg = fake_config(project={"database_url": store_url})
    cfg.save(tmp_path)
    store = open_store(tmp_path, url=store_url)
    ingest_file(store, cfg, write_csv(tmp_path / "gold.csv", make_rows()))
    yield tmp_path, cfg, store
    store.close()


def ingest_fails(env, path, *fragments, **kwargs) -> str:
    """Ingest ``path`` into ``env`` (tmp folder, config, store) expecting an IngestError whose message
    holds every fragment, with nothing written; returns the message."""
    from goldloop.errors import IngestError
    from goldloop.ingest import ingest_file

    _, cfg, store = env
    with pytest.raises(IngestError) as info:
        ingest_file(store, cfg, path, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert store.records() == [] and store.ingest_rows() == [], "a failed ingest must write nothing"
    return str(info.value)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of two CPUs, started by the tests themselves, for one test module."""
    ray_mod = pytest.importorskip("ray")
    if not ray_mod.is_initialized():
        ray_mod.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray_mod
    ray_mod.shutdown()

"""The SQLite store: append-only, content-addressed, safe to reopen."""

import numpy as np

from goldloop.records import Decision, Provenance, Record, Verdict, now
from goldloop.store import open_store


def test_records_are_content_addressed_and_immutable(tmp_path):
    store = open_store(tmp_path)
    a = Record.gold("same text", "x", source="f.csv line 2")
    assert store.add_records([a, a]) == 1
    assert store.add_records([Record.gold("same text", "x", source="other")]) == 0
    assert store.get_record(a.id).provenance.source == "f.csv line 2"
    store.close()
    again = open_store(tmp_path)
    assert [r.id for r in again.records()] == [a.id]


def test_provenance_round_trip(tmp_path):
    store = open_store(tmp_path)
    prov = Provenance(parents=("s1", "s2"), strategy="paraphrase.v1", backend="fake", model="m",
                      params={"temperature": 0.9, "stop": ["\n"]}, template_hash="abc", request_key="k",
                      round=2, source="generate", created_at=now())
    rec = Record.synthetic("draft", "x", prov)
    store.add_records([rec])
    assert store.get_record(rec.id) == rec


def test_verdicts_once_per_filter_and_round(tmp_path):
    store = open_store(tmp_path)
    rec = Record.gold("t", "x")
    store.add_records([rec])
    store.add_verdicts([Verdict(rec.id, "f.v1", False, 0.1, "first", 1)])
    store.add_verdicts([Verdict(rec.id, "f.v1", True, 0.9, "second", 1)])
    assert [v.reason for v in store.verdicts(record_id=rec.id)] == ["first"]


def test_wal_and_embedding_cache(tmp_path):
    store = open_store(tmp_path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    vec = np.arange(4, dtype=np.float32)
    store.put_embeddings("m", {"h": vec})
    assert np.array_equal(store.get_embeddings("m", ["h", "missing"])["h"], vec)


def test_rounds_and_decisions(tmp_path):
    store = open_store(tmp_path)
    assert store.open_round() == 1 and store.open_round() == 1
    rec = Record.gold("t", "x")
    store.add_records([rec])
    store.add_decision(Decision(rec.id, "accept", "ann", 1))
    store.finish_round(1, None, {"x": 1})
    assert store.open_round() == 2
    assert [d.action for d in store.decisions(round=1)] == ["accept"]
    assert [e[1] for e in store.events()] == ["round.open", "round.done", "round.open"]

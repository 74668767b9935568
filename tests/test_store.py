"""The store, on SQLite and on PostgreSQL: append-only, content-addressed, migrated, audited."""

import sqlite3
import threading

import numpy as np
import pytest

from goldloop.errors import StoreError
from goldloop.records import Comparison, Decision, Provenance, Ranking, Record, Snapshot, Verdict, now
from goldloop.store import GenerationRow, IngestRow, SQLiteStore, migrations, open_store


def _raw(store, sql, args=()):
    """Write directly to the database, behind the store's back (as a tamperer would)."""
    with store.transaction() as db:
        db.execute(sql, args)


def test_records_are_content_addressed_and_immutable(any_store, store_url, tmp_path):
    a = Record.gold("same text", "x", source="f.csv line 2")
    assert any_store.add_records([a, a]) == 1
    assert any_store.add_records([Record.gold("same text", "x", source="other")]) == 0
    assert any_store.get_record(a.id).provenance.source == "f.csv line 2"
    any_store.close()
    again = open_store(tmp_path, url=store_url)
    assert [r.id for r in again.records()] == [a.id]
    again.close()


def test_records_keep_insertion_order_and_filters(any_store):
    recs = [Record.gold(f"text {i}", "ab"[i % 2], split="heldout" if i == 3 else "train", source=f"t.csv line {i}")
            for i in range(6)]
    any_store.add_records(recs)
    assert [r.id for r in any_store.records()] == [r.id for r in recs]
    assert [r.id for r in any_store.records(split="heldout")] == [recs[3].id]
    assert [r.id for r in any_store.records(ids=[recs[4].id, "missing", recs[1].id])] == [recs[4].id, recs[1].id]
    assert any_store.labels() == ["a", "b"]
    assert any_store.ids_with_prefix(recs[2].id[:10]) == [recs[2].id]
    assert any_store.ids_with_prefix("%") == []


def test_iter_records_pages_through_the_same_records_in_the_same_order(any_store):
    recs = [Record.gold(f"text {i}", "ab"[i % 2], split="heldout" if i % 5 == 0 else "train", source=f"t.csv line {i}")
            for i in range(23)]
    any_store.add_records(recs)
    for kwargs in ({}, {"split": "train"}, {"split": "heldout", "origin": "gold"}, {"origin": "synthetic"}):
        pages = list(any_store.iter_records(page=4, **kwargs))
        assert all(0 < len(p) <= 4 for p in pages)
        assert [r for p in pages for r in p] == any_store.records(**kwargs)
    assert [len(p) for p in any_store.iter_records(page=10)] == [10, 10, 3]


def test_a_big_batch_of_verdicts_and_of_replies_is_stored_once_and_vouched_for(any_store):
    recs = [Record.gold(f"text {i}", "ab"[i % 2], source=f"t.csv line {i}") for i in range(1200)]
    any_store.add_records(recs)
    # 1,200 verdicts: COPY on PostgreSQL; half again with 1,200 new ones: only the new are written
    verdicts = [Verdict(r.id, "length.v1", i % 3 != 0, None if i % 7 == 0 else i / 10, f"why {i}", 1, "")
                for i, r in enumerate(recs)]
    any_store.add_verdicts(verdicts)
    any_store.add_verdicts(verdicts[600:] + [Verdict(v.record_id, "exact_dup.v1", True, 0.0, "new text", 1, "")
                                              for v in verdicts])
    stored = any_store.verdicts(round=1)
    assert len(stored) == 2400 and any_store.verdict_counts(1) == {"length.v1": 1200, "exact_dup.v1": 1200}
    assert [v for v in stored if v.filter == "length.v1"] == verdicts
    assert any_store.verdicts(round=1, filter="length.v1", keep=False) == [v for v in verdicts if not v.keep]
    assert any_store.judged_ids(1, "exact_dup.v1") == {r.id for r in recs}
    rows = [(GenerationRow(f"k{i}", 1, "paraphrase.v1", "a", "p", "ok", f"draft {i}", "", 1, 5, 5, 0.1),
             [Record.synthetic(f"draft {i}", "a", Provenance(
                 parents=(recs[0].id,), strategy="paraphrase.v1", backend="fake", model="m", params={"t": 1},
                 template_hash="h", request_key=f"k{i}", round=1, source="generate", created_at=now()))])
            for i in range(30)]
    any_store.add_generations(rows)
    assert len(any_store.generations(1)) == 30 and len(any_store.records(origin="synthetic")) == 30
    assert any_store.verify_audit().ok


def test_provenance_round_trip(any_store):
    prov = Provenance(parents=("s1", "s2"), strategy="paraphrase.v1", backend="fake", model="m",
                      params={"temperature": 0.9, "stop": ["\n"]}, template_hash="abc", request_key="k",
                      round=2, source="generate", created_at=now())
    rec = Record.synthetic("draft", "x", prov)
    any_store.add_records([rec])
    assert any_store.get_record(rec.id) == rec


def test_verdicts_once_per_filter_and_round(any_store):
    rec = Record.gold("t", "x", source="t.csv line 2")
    any_store.add_records([rec])
    any_store.add_verdicts([Verdict(rec.id, "f.v1", False, 0.1, "first", 1)])
    any_store.add_verdicts([Verdict(rec.id, "f.v1", True, 0.9, "second", 1)])
    assert [v.reason for v in any_store.verdicts(record_id=rec.id)] == ["first"]


def test_embedding_cache(any_store):
    vec = np.arange(4, dtype=np.float32)
    any_store.put_embeddings("m", {"h": vec})
    any_store.put_embeddings("m", {"h": vec + 1})           # first write wins: never recomputed
    assert np.array_equal(any_store.get_embeddings("m", ["h", "missing"])["h"], vec)


def test_sqlite_uses_write_ahead_logging(tmp_path):
    store = open_store(tmp_path)
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_rounds_and_decisions(any_store):
    assert any_store.open_round() == 1 and any_store.open_round() == 1
    rec = Record.gold("t", "x", source="t.csv line 2")
    any_store.add_records([rec])
    first = any_store.add_decision(Decision(rec.id, "accept", "ann", 1))
    second = any_store.add_decision(Decision(rec.id, "undo", "ann", 1))
    assert second > first > 0
    any_store.finish_round(1, None, {"x": 1})
    assert any_store.open_round() == 2
    assert [d.action for d in any_store.decisions(round=1)] == ["accept", "undo"]
    assert [e[1] for e in any_store.events()] == ["round.open", "round.done", "round.open"]
    assert any_store.rounds()[0].metrics == {"x": 1}


def test_decisions_and_drops_are_read_for_a_page_of_records(any_store):
    """A stage that streams a round reads the decisions and filter drops of one page of records at a
    time: the same decisions, in the order made, as the round's read at once and filtered."""

    number = any_store.open_round()
    gold = Record.gold("g", "x", source="t.csv line 2")
    drafts = [Record(id=f"d{i}", text=f"draft {i}", label="x", origin="synthetic", split=None, round=number,
                     provenance=Provenance(parents=(gold.id,), strategy="paraphrase.v1", backend="fake", model="m",
                                         params={"t": 1}, template_hash="t", request_key=f"k{i}", round=number))
              for i in range(1203)]                               # more than one IN list of ids
    any_store.add_records([gold, *drafts])
    actions = ("accept", "reject", "undo", "accept")
    for i, rec in enumerate(drafts[::3]):
        for action in actions[:1 + i % 4]:
            any_store.add_decision(Decision(rec.id, action, f"r{i % 2}", number))
    any_store.add_verdicts([Verdict(r.id, "f", i % 5 != 0, None, "", number, flag="dup" if i % 7 == 0 else "")
                            for i, r in enumerate(drafts)])
    whole = any_store.decisions(round=number)
    page = [r.id for r in drafts[600:]] + [drafts[0].id, drafts[0].id]
    assert any_store.decisions(round=number, record_ids=page) == [d for d in whole if d.record_id in set(page)]
    assert any_store.decisions(record_ids=[]) == [] and any_store.decisions(round=number + 1, record_ids=page) == []
    marks = any_store.verdict_marks(number)
    assert any_store.verdict_marks(number, page) == [m for m in marks if m[0] in set(page)] != []
    pages = list(any_store.iter_decided_ids(round=number, page=50))
    assert [i for p in pages for i in p] == sorted({d.record_id for d in whole}) and max(map(len, pages)) == 50


def test_a_big_snapshot_is_vouched_for_a_part_at_a_time(any_store, monkeypatch):
    import goldloop.store._snapshots as snapshots_module

    monkeypatch.setattr(snapshots_module, "SNAPSHOT_PART", 2)
    recs = [Record.gold(f"t{i}", "x", source=f"t.csv line {i}") for i in range(5)]
    any_store.add_records(recs)
    any_store.add_snapshot(Snapshot("s1", "round-1", 1, tuple(r.id for r in recs), {"records": 5}, now()))
    entries = [e for e in any_store.audit_entries() if e["kind"].startswith("snapshot")]
    assert [e["kind"] for e in entries] == ["snapshot", "snapshot.records", "snapshot.records"]
    assert entries[0]["payload"]["parts"] == 3 and [len(e["payload"]["rows"]) for e in entries] == [3, 2, 1]
    assert any_store.get_snapshot("s1").record_ids == tuple(r.id for r in recs)
    assert any_store.verify_audit().ok
    with any_store.transaction() as db:              # a row of the last part removed behind goldloop's back
        db.execute("DELETE FROM snapshot_records WHERE record_id = ?", (recs[-1].id,))
    problems = any_store.verify_audit().problems
    assert len(problems) == 1 and "snapshot_records" in problems[0] and "was deleted" in problems[0]


def test_generations_replace_a_failed_reply(any_store):
    row = GenerationRow("k1", 1, "paraphrase.v1", "x", "prompt", "failed", "", "HTTP 500", 3, 0, 0, 0.1, "fake", "m")
    any_store.add_generation(row, [])
    assert any_store.finished_requests(["k1"]) == set()
    any_store.add_generation(row._replace(status="ok", reply="text", error=""), [])
    assert any_store.finished_requests(["k1", "k2"]) == {"k1"}
    assert [g.status for g in any_store.generations(round=1)] == ["ok"]


def test_ingest_rows_and_snapshots(any_store):
    recs = [Record.gold(f"t{i}", "x", source=f"t.csv line {i}") for i in range(3)]
    any_store.add_records(recs)
    any_store.add_ingest_rows([IngestRow("b1", "f.csv", i + 2, r.id, "added", "") for i, r in enumerate(recs)])
    assert [r.row for r in any_store.ingest_rows("b1")] == [2, 3, 4]
    snap = Snapshot("s1", "round-1", 1, tuple(r.id for r in recs), {"records": 3}, now())
    any_store.add_snapshot(snap)
    any_store.add_snapshot(snap)                           # idempotent
    assert any_store.get_snapshot("round-1") == snap
    assert any_store.snapshots_with(recs[0].id) == ["s1"]


def test_comparisons_and_rankings(any_store):
    a, b, c = (Record.gold(t, "x", source="t.csv") for t in ("a", "b", "c"))
    any_store.add_records([a, b, c])
    cid = any_store.add_comparison(Comparison(a.id, b.id, "a", "ann", 1))
    any_store.add_comparison(Comparison(a.id, b.id, "undo", "ann", 1))
    assert [(x.id, x.winner) for x in any_store.comparisons(round=1)] == [(cid, "a"), (cid + 1, "undo")]
    with pytest.raises(StoreError, match="winner"):
        any_store.add_comparison(Comparison(a.id, b.id, "c", "ann", 1))
    rid = any_store.add_ranking(Ranking((c.id, a.id, b.id), "bob", 1))
    assert any_store.rankings()[0].record_ids == (c.id, a.id, b.id) and any_store.rankings()[0].id == rid
    with pytest.raises(StoreError, match="two or more"):
        any_store.add_ranking(Ranking((a.id, a.id), "bob", 1))


def test_a_failed_transaction_writes_nothing(any_store):
    rec = Record.gold("kept out", "x", source="t.csv line 9")
    with pytest.raises(RuntimeError):
        with any_store.transaction():
            any_store.add_records([rec])
            raise RuntimeError("stop halfway")
    assert any_store.records() == [] and any_store.audit_entries() == []


# -- migrations -------------------------------------------------------------------------

def test_migrations_apply_once_in_order(any_store, store_url, tmp_path):
    versions = [m.version for m in migrations()]
    assert versions == sorted(versions) and versions[0] == "0001"
    applied = [r[0] for r in any_store.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert applied == versions
    any_store.close()
    again = open_store(tmp_path, url=store_url)             # reopening applies nothing twice
    assert [r[0] for r in again.query("SELECT version FROM schema_migrations ORDER BY version")] == versions
    again.close()


def test_a_store_from_a_newer_goldloop_is_refused(any_store, store_url, tmp_path):
    _raw(any_store, "INSERT INTO schema_migrations VALUES (?, ?, ?, ?)", ("9999", "future", "x", now()))
    any_store.close()
    with pytest.raises(StoreError, match="newer goldloop"):
        open_store(tmp_path, url=store_url)


def test_a_changed_migration_is_refused(any_store, store_url, tmp_path):
    _raw(any_store, "UPDATE schema_migrations SET checksum = 'x' WHERE version = '0002'")
    any_store.close()
    with pytest.raises(StoreError, match="migration 0002 differs from the one applied"):
        open_store(tmp_path, url=store_url)


def test_a_store_made_before_migrations_is_upgraded_in_place(tmp_path):
    """A version-1 SQLite store (schema without a migrations table) gains the later tables."""
    path = tmp_path / "old.db"
    first = migrations()[0]
    from goldloop.store._migrations import statements

    db = sqlite3.connect(path)
    for stmt in statements(first.sql, SQLiteStore.types):
        db.execute(stmt)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO records VALUES ('r1', 'old text', 'h', 'x', 'gold', 'train', 0, 1.0)")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.schema_version() == migrations()[-1].version
    assert store.query("SELECT text FROM records") == [("old text",)]
    assert store.comparisons() == []                         # the new tables exist
    # The rows it held are vouched for by a first audit entry, so a later edit is caught.
    assert [e["kind"] for e in store.audit_entries()] == ["baseline"]
    assert store.verify_audit().ok
    with store.transaction() as db:
        db.execute("UPDATE records SET label = 'y' WHERE id = 'r1'")
    assert store.verify_audit().problems == ['records row ["r1"] was edited after audit entry 1 recorded it']


def test_bad_database_urls_are_explained(tmp_path):
    with pytest.raises(StoreError, match="unsupported database URL mysql"):
        open_store(tmp_path, url="mysql://u@h/db")
    with pytest.raises(StoreError, match="cannot connect to postgresql://u:\\*\\*\\*@127.0.0.1:1/db"):
        open_store(tmp_path, url="postgresql://u:secret@127.0.0.1:1/db")
    (tmp_path / "junk.db").write_text("not a database" * 100)
    with pytest.raises(StoreError, match="not a goldloop store"):
        open_store(tmp_path, url=f"sqlite:///{tmp_path / 'junk.db'}")


# -- the audit log ----------------------------------------------------------------------

def _populated(store):
    gold = Record.gold("gold text", "x", source="f.csv line 2")
    store.add_records([gold])
    prov = Provenance(parents=(gold.id,), strategy="paraphrase.v1", backend="fake", model="m", request_key="k",
                      params={"temperature": 0.9}, template_hash="t" * 16, round=1, created_at=now())
    syn = Record.synthetic("draft text", "x", prov)
    store.add_generation(GenerationRow("k", 1, "paraphrase.v1", "x", "p", "ok", "draft text", "", 1, 5, 5, 0.1,
                                       "fake", "m"), [syn])
    store.add_verdicts([Verdict(syn.id, "length.v1", True, 12, "12 words", 1)])
    store.add_decision(Decision(syn.id, "accept", "ann", 1))
    return gold, syn


def test_the_audit_log_vouches_for_every_write(any_store):
    _populated(any_store)
    report = any_store.verify_audit()
    assert report.ok, report.problems
    kinds = [e["kind"] for e in any_store.audit_entries()]
    assert kinds == ["records.add", "generation", "records.add", "verdicts", "decision"]
    assert any_store.audit_entries()[-1]["actor"] == "ann"


def test_audit_verify_catches_an_edited_row(any_store):
    _, syn = _populated(any_store)
    _raw(any_store, "UPDATE decisions SET action = 'reject' WHERE record_id = ?", (syn.id,))
    problems = any_store.verify_audit().problems
    assert len(problems) == 1 and problems[0].startswith("decisions row [1] was edited")


def test_audit_verify_catches_a_deleted_row_and_an_added_one(any_store):
    _, syn = _populated(any_store)
    _raw(any_store, "DELETE FROM verdicts WHERE record_id = ?", (syn.id,))
    _raw(any_store, "INSERT INTO decisions (record_id, action, reviewer, round, created_at) VALUES (?, ?, ?, ?, ?)",
         (syn.id, "reject", "mallory", 1, now()))
    problems = any_store.verify_audit().problems
    assert any("verdicts row" in p and "was deleted" in p for p in problems)
    assert any("decisions row [2] is not in the audit log" in p for p in problems)


def test_audit_verify_catches_edited_and_deleted_entries(any_store):
    _populated(any_store)
    _raw(any_store, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
    assert any("entry 2" in p and "edited" in p for p in any_store.verify_audit().problems)
    _raw(any_store, "UPDATE audit_log SET actor = ? WHERE seq = 2", (any_store.actor,))
    assert any_store.verify_audit().ok
    _raw(any_store, "DELETE FROM audit_log WHERE seq = 3")
    problems = any_store.verify_audit().problems
    assert any("link to the previous entry is broken" in p for p in problems)
    assert any("missing" in p for p in problems)


def test_the_audit_chain_holds_under_concurrent_writers(any_store, store_url, tmp_path):
    recs = [Record.gold(f"text {i}", "x", source=f"t.csv line {i}") for i in range(40)]
    any_store.add_records(recs)

    def review(name: str, mine: list[Record]) -> None:
        store = open_store(tmp_path, url=store_url)
        for r in mine:
            store.add_decision(Decision(r.id, "accept", name, 1))
        store.close()

    threads = [threading.Thread(target=review, args=(f"r{k}", recs[k::4])) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(any_store.decisions()) == 40
    report = any_store.verify_audit()
    assert report.ok, report.problems[:3]
    assert report.entries == 41


def test_records_with_incomplete_provenance_are_refused_when_written(any_store):
    """Provenance is checked on every write, not only by a test: nothing of the batch is stored."""
    gold = Record.gold("gold text", "x", source="f.csv line 2")
    untraced = Record.gold("no source", "x")
    with pytest.raises(StoreError, match=r"incomplete provenance: no source"):
        any_store.add_records([gold, untraced])
    assert any_store.records() == []
    prov = Provenance(parents=(gold.id,), strategy="paraphrase.v1", backend="fake", model="m", request_key="k",
                      round=1, created_at=now())                      # no params, no template hash
    draft = Record.synthetic("draft text", "x", prov)
    with pytest.raises(StoreError, match=r"no params, template_hash"):
        any_store.add_generation(GenerationRow("k", 1, "paraphrase.v1", "x", "p", "ok", "draft text", "", 1, 5, 5,
                                               0.1, "fake", "m"), [draft])
    assert any_store.generations() == [] and any_store.records() == []
    orphan = Record.edited(gold, "new text", "x", "", 1)               # an edit by nobody
    with pytest.raises(StoreError, match=r"no reviewer"):
        any_store.add_decision(Decision(gold.id, "edit", "ann", 1, new_record_id=orphan.id), new_record=orphan)
    assert any_store.decisions() == []


@pytest.mark.parametrize("page", [1, 2, 7])
def test_audit_verify_streams_in_pages_and_finds_the_same(any_store, page):
    """Pages of one row (composite keys included) find what one big page finds."""
    _, syn = _populated(any_store)
    assert any_store.verify_audit(page=page).ok
    whole = any_store.verify_audit()
    assert (whole.entries, whole.rows) == (any_store.verify_audit(page=page).entries,
                                           any_store.verify_audit(page=page).rows)
    _raw(any_store, "UPDATE verdicts SET reason = 'changed' WHERE record_id = ?", (syn.id,))
    _raw(any_store, "DELETE FROM decisions WHERE record_id = ?", (syn.id,))
    assert sorted(any_store.verify_audit(page=page).problems) == sorted(any_store.verify_audit().problems)
    assert len(any_store.verify_audit(page=page).problems) == 2


def test_a_large_batch_of_records_goes_in_once_even_when_some_are_stored(any_store):
    """Past a thousand rows PostgreSQL takes the COPY path; both stores skip what is stored."""
    def draft(i: int) -> Record:
        return Record.synthetic(f"draft {i} of a large batch", "billing", Provenance(
            parents=("g",), strategy="paraphrase.v1", backend="fake", model="m", params={"t": 1}, template_hash="t",
            request_key=f"k{i}", round=1, source="generate", created_at=now()))

    assert any_store.add_records([draft(i) for i in range(1500)]) == 1500
    again = [draft(i) for i in range(1000, 2600)] + [draft(2599)]          # 500 stored, one repeated
    assert any_store.add_records(again) == 1100
    stored = any_store.records(origin="synthetic")
    assert len(stored) == 2600 and len({r.id for r in stored}) == 2600
    assert stored[1234].provenance.request_key == "k1234"
    assert any_store.verify_audit().ok

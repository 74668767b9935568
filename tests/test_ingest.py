"""Ingest: every error path names file, row and field, and nothing is written on error."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from goldloop.errors import IngestError
from goldloop.ingest import ingest_file
from goldloop.store import open_store

from .conftest import fake_config, make_rows, write_csv


@pytest.fixture
def env(tmp_path):
    cfg = fake_config()
    store = open_store(tmp_path / "p")
    yield tmp_path, cfg, store
    store.close()


def _fails(env, path, *fragments, **kwargs):
    _, cfg, store = env
    with pytest.raises(IngestError) as info:
        ingest_file(store, cfg, path, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert store.records() == [] and store.ingest_rows() == [], "a failed ingest must write nothing"
    return str(info.value)


def test_missing_file(env):
    _fails(env, env[0] / "nope.csv", "nope.csv: no such file")


def test_unsupported_type(env):
    path = env[0] / "data.xlsx"
    path.write_text("x")
    _fails(env, path, "data.xlsx: unsupported file type '.xlsx'", ".csv", ".jsonl", ".parquet")


def test_empty_csv(env):
    path = env[0] / "empty.csv"
    path.write_text("")
    _fails(env, path, "empty.csv: the file is empty")


def test_header_only(env):
    path = env[0] / "head.csv"
    path.write_text("text,label\n")
    _fails(env, path, "head.csv: no data rows")


def test_missing_columns_name_the_option(env):
    path = write_csv(env[0] / "t.csv", [("a", "b")], header=("body", "category"))
    msg = _fails(env, path, "t.csv: no column 'text'; map the right one with --text-column",
                 "no column 'label'; map the right one with --label-column", "columns found: body, category")
    assert msg


def test_column_mapping_fixes_it(env):
    tmp, cfg, store = env
    path = write_csv(tmp / "t.csv", make_rows(3), header=("body", "category"))
    report = ingest_file(store, cfg, path, text_column="body", label_column="category")
    assert report.added == 9


def test_wrong_field_count(env):
    path = env[0] / "bad.csv"
    path.write_text("text,label\nhello there,a\nhello, world,b\n")
    _fails(env, path, "bad.csv line 3: 3 fields where the header has 2", "quote text that contains ','")


def test_not_utf8(env):
    path = env[0] / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 au lait,a\n".encode("latin-1"))
    _fails(env, path, "latin.csv: not UTF-8 text", "re-save the file as UTF-8")


def test_row_errors_are_all_listed_with_line_and_field(env):
    path = env[0] / "rows.csv"
    path.write_text("text,label\ngood text here,a\n,b\nsome text,\n   ,c\n")
    msg = _fails(env, path, "rows.csv: 3 of 4 rows cannot be ingested; nothing was written",
                 "rows.csv line 3: 'text' is empty", "rows.csv line 4: no 'label'",
                 "rows.csv line 5: 'text' is empty")
    assert "--label-column" in msg


def test_empty_after_normalisation(env):
    tmp, _, _ = env
    env[1].ingest.normalize = "letters"
    path = write_csv(tmp / "n.csv", [("12345 !!!", "a"), ("real words", "b")])
    _fails(env, path, "n.csv line 2: 'text' is empty after normalisation")


def test_label_not_in_configured_set(env):
    tmp, cfg, _ = env
    cfg.project.labels = ["billing", "outage"]
    path = write_csv(tmp / "l.csv", [("a text", "billing"), ("another text", "refunds")])
    _fails(env, path, "l.csv line 3: label 'refunds' is not in the project's label set (billing, outage)",
           "[project] labels")


def test_too_long(env):
    tmp, cfg, _ = env
    cfg.ingest.max_chars = 10
    path = write_csv(tmp / "long.csv", [("x" * 11, "a")])
    _fails(env, path, "long.csv line 2: text is 11 characters, over [ingest] max_chars = 10")


def test_jsonl_errors(env):
    tmp = env[0]
    bad_json = tmp / "a.jsonl"
    bad_json.write_text('{"text": "ok", "label": "a"}\n{"text": "broken", \n')
    _fails(env, bad_json, "a.jsonl line 2: not valid JSON", "each line must be one JSON object")
    not_obj = tmp / "b.jsonl"
    not_obj.write_text('["text", "label"]\n')
    _fails(env, not_obj, "b.jsonl line 1: expected a JSON object, got list")
    wrong_type = tmp / "c.jsonl"
    wrong_type.write_text('{"text": 42, "label": "a"}\n{"text": "fine", "label": {"x": 1}}\n{"label": "a"}\n')
    _fails(env, wrong_type, "c.jsonl line 1: 'text' must be text, got int 42",
           "c.jsonl line 2: 'label' must be a string or integer", "c.jsonl line 3: no 'text'")


def test_parquet_errors(env):
    tmp = env[0]
    path = tmp / "d.parquet"
    pq.write_table(pa.table({"body": ["x"], "label": ["a"]}), path)
    _fails(env, path, "d.parquet: no column 'text'; map the right one with --text-column")
    broken = tmp / "e.parquet"
    broken.write_bytes(b"not parquet at all")
    _fails(env, broken, "e.parquet: cannot read as Parquet")
    nulls = tmp / "f.parquet"
    pq.write_table(pa.table({"text": ["fine", None], "label": ["a", "b"]}), nulls)
    _fails(env, nulls, "f.parquet row 2: no 'text'")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_formats_ingest_the_same(env, fmt):
    tmp, cfg, store = env
    rows = make_rows(10)
    path = tmp / f"g.{fmt}"
    if fmt == "csv":
        write_csv(path, rows)
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "label": l}) for t, l in rows))
    else:
        pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [l for _, l in rows]}), path)
    report = ingest_file(store, cfg, path)
    assert report.added == 30
    assert report.by_split == {"train": 24, "heldout": 6}


def test_duplicates_are_recorded_not_silently_dropped(env):
    tmp, cfg, store = env
    rows = make_rows(5) + [make_rows(5)[0], (make_rows(5)[1][0], "outage")]
    path = write_csv(tmp / "dup.csv", rows)
    report = ingest_file(store, cfg, path)
    assert (report.rows, report.added, report.duplicates) == (17, 15, 2)
    log = store.ingest_rows(report.batch)
    assert len(log) == 17
    dups = [r for r in log if r.status == "duplicate"]
    assert [r.row for r in dups] == [16, 17]
    assert dups[0].reason == "same text as line 2" and dups[0].record_id
    assert "labelled 'billing' there, 'outage' here; the first label is kept" in dups[1].reason


def test_duplicate_of_earlier_file_points_at_the_record(env):
    tmp, cfg, store = env
    ingest_file(store, cfg, write_csv(tmp / "one.csv", make_rows(5)))
    second = ingest_file(store, cfg, write_csv(tmp / "two.csv", make_rows(5)[:2]), split="heldout")
    assert second.added == 0
    assert all(r.reason.startswith("same text as gold record") for r in store.ingest_rows(second.batch))


def test_split_is_stratified_and_seeded(tmp_path):
    results = []
    for run in range(2):
        cfg = fake_config()
        store = open_store(tmp_path / f"p{run}")
        ingest_file(store, cfg, write_csv(tmp_path / "s.csv", make_rows(20)))
        held = store.records(origin="gold", split="heldout")
        results.append(sorted(r.id for r in held))
        per_label = {label: sum(r.label == label for r in held) for label in ("billing", "outage", "account")}
        assert per_label == {"billing": 4, "outage": 4, "account": 4}
        store.close()
    assert results[0] == results[1]


def test_reingesting_the_same_file_is_a_no_op(env):
    tmp, cfg, store = env
    path = write_csv(tmp / "r.csv", make_rows(5))
    ingest_file(store, cfg, path)
    again = ingest_file(store, cfg, path)
    assert again.already_ingested and len(store.records()) == 15


def test_heldout_file_may_not_bring_new_labels(env):
    tmp, cfg, store = env
    ingest_file(store, cfg, write_csv(tmp / "train.csv", make_rows(5)), split="train")
    path = write_csv(tmp / "test.csv", [("a brand new text", "shipping")])
    with pytest.raises(IngestError, match="label 'shipping' is not in the project's label set"):
        ingest_file(store, cfg, path, split="heldout")

"""Ingest: every error path names file, row and field, and nothing is written on error."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from goldloop.errors import IngestError
from goldloop.ingest import ingest_file
from goldloop.store import open_store

from .conftest import fake_config, make_rows, write_csv
from .conftest import ingest_fails as _fails


@pytest.fixture
def env(tmp_path):
    cfg = fake_config()
    store = open_store(tmp_path / "p")
    yield tmp_path, cfg, store
    store.close()




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
    _fails(env, path, "latin.csv line 2, character 4: byte 0xE9 is not UTF-8", "re-save it as UTF-8")


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
    _fails(env, path, "long.csv line 2: 'text' is 11 characters, over [ingest] max_chars = 10")


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


def _fails_keeping(env, path, *fragments, **kwargs):
    """Like _fails, for a project that already holds records: the store must not change."""
    _, cfg, store = env
    before = (len(store.records()), len(store.ingest_rows()))
    with pytest.raises(IngestError) as info:
        ingest_file(store, cfg, path, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert (len(store.records()), len(store.ingest_rows())) == before, "a failed ingest must write nothing"
    return str(info.value)


def _write(path, fmt, rows):
    """Write (text, label) rows as CSV, JSONL or Parquet; labels keep their Python type."""
    if fmt == "csv":
        write_csv(path, rows)
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "label": l}) for t, l in rows) + "\n")
    else:
        pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [l for _, l in rows]}), path)
    return path


# -- control characters ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt,where", [("csv", "line 3"), ("jsonl", "line 2"), ("parquet", "row 2")])
def test_nul_in_text_is_located(env, fmt, where):
    path = _write(env[0] / f"nul.{fmt}", fmt, [("fine text", "a"), ("hello\x00world", "b")])
    _fails(env, path, f"nul.{fmt} {where}: 'text' holds the control character U+0000 (NUL) at character 6",
           "remove it")


@pytest.mark.parametrize("fmt,where", [("csv", "line 2"), ("jsonl", "line 1"), ("parquet", "row 1")])
def test_control_character_in_label_is_located(env, fmt, where):
    path = _write(env[0] / f"lab.{fmt}", fmt, [("some text", "billing\x1b"), ("more text", "outage")])
    _fails(env, path, f"lab.{fmt} {where}: 'label' holds the control character U+001B (ESC) at character 8")


def test_line_break_in_label_is_refused(env):
    path = _write(env[0] / "nl.csv", "csv", [("some text", "bill\ning"), ("more text", "outage")])
    _fails(env, path, "nl.csv line 2: 'label' holds a line break U+000A at character 5", "one line")


@pytest.mark.parametrize("char,what", [("\x7f", "U+007F (DEL)"), ("\x85", "U+0085 (NEL)"), ("\x1c", "U+001C"),
                                       ("\ufeff", "the byte-order mark U+FEFF")])
def test_other_invisible_characters_are_refused(env, char, what):
    path = _write(env[0] / "c.jsonl", "jsonl", [(f"ab{char}cd", "a"), (f"x{char}y{char}", "b")])
    msg = _fails(env, path, "c.jsonl line 1: 'text' holds ", what, "at character 3",
                 "c.jsonl line 2:", "at character 2 (2 in all)")
    assert "remove" in msg


def test_tab_newline_and_carriage_return_are_whitespace(env):
    tmp, cfg, store = env
    path = _write(tmp / "ws.csv", "csv", [("one\ttwo\r\nthree\nfour", "a"), ("plain text", "b")])
    assert ingest_file(store, cfg, path).added == 2
    assert "one two three four" in [r.text for r in store.records()]


def test_lone_surrogate_from_json_escape_is_refused(env):
    path = env[0] / "s.jsonl"
    path.write_text('{"text": "broken \\ud83d emoji", "label": "a"}\n')
    _fails(env, path, "s.jsonl line 1: 'text' holds a lone surrogate U+D83D at character 8", "\\ud83d")


def test_raw_control_characters_in_json_strings(env):
    tmp, cfg, store = env
    path = tmp / "raw.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "a\x00b", "label": "a"}\n')
    _fails(env, path, "raw.jsonl line 2: 'text' holds the control character U+0000 (NUL) at character 2")
    tabs = tmp / "tabs.jsonl"
    tabs.write_text('{"text": "col one\tcol two", "label": "a"}\n')
    assert ingest_file(store, cfg, tabs).added == 1
    assert store.records()[0].text == "col one col two"


def test_json_line_with_unicode_line_separator_is_one_line(env):
    tmp, cfg, store = env
    path = tmp / "sep.jsonl"
    rows = [{"text": "first\u2028second", "label": "a"}, {"text": "third", "label": "b"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert ingest_file(store, cfg, path).added == 2


# -- fields longer than the CSV reader's default limit ------------------------------------------

def test_field_over_reader_limit_is_reported_as_too_long(env):
    tmp, cfg, _ = env
    before = csv.field_size_limit()
    path = write_csv(tmp / "huge.csv", [("short text", "a"), ("x" * 140_000, "b")])
    msg = _fails(env, path, "huge.csv line 3: 'text' is 140000 characters, over [ingest] max_chars = 20000",
                 "[ingest] max_chars")
    assert "malformed" not in msg and "quoting" not in msg
    assert csv.field_size_limit() == before


def test_field_between_max_chars_and_reader_limit_names_column(env):
    tmp, cfg, _ = env
    cfg.ingest.max_chars = 1000
    path = write_csv(tmp / "mid.csv", [("y" * 5000, "a")], header=("body", "label"))
    _fails(env, path, "mid.csv line 2: 'body' is 5000 characters, over [ingest] max_chars = 1000",
           text_column="body")


def test_field_up_to_max_chars_is_read_and_limit_restored(env):
    tmp, cfg, store = env
    cfg.ingest.max_chars = 200_000
    before = csv.field_size_limit()
    path = write_csv(tmp / "big.csv", [("z " * 70_000, "a"), ("small", "b")])
    assert ingest_file(store, cfg, path).added == 2
    assert csv.field_size_limit() == before


# -- encodings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_windows_1252_is_located_and_named(env, suffix):
    path = env[0] / f"win.{suffix}"
    body = ("text,label\nplain,a\n\u201cquoted\u201d caf\u00e9,b\n" if suffix == "csv" else
            '{"text": "plain", "label": "a"}\n{"text": "caf\u00e9", "label": "b"}\n')
    path.write_bytes(body.encode("cp1252"))
    column = 1 if suffix == "csv" else 14
    shown = "'\u201c'" if suffix == "csv" else "'\u00e9'"
    msg = _fails(env, path, f"win.{suffix} line 3, character {column}" if suffix == "csv"
                 else f"win.{suffix} line 2, character {column}", "is not UTF-8", "Windows-1252", shown,
                 "re-save it as UTF-8")
    assert "byte " in msg


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_utf16_is_named(env, encoding, suffix):
    path = env[0] / f"wide.{suffix}"
    body = "text,label\nhello,a\n" if suffix == "csv" else '{"text": "hello", "label": "a"}\n'
    path.write_bytes(body.encode(encoding))
    _fails(env, path, f"wide.{suffix}: ", "UTF-16", "re-save it as UTF-8")


# -- label types --------------------------------------------------------------------------------

def test_integer_label_among_string_labels_is_refused(env):
    path = env[0] / "mixed.jsonl"
    rows = [("first text", "billing"), ("second text", 1), ("third text", "outage"), ("fourth", "billing")]
    msg = _fails(env, _write(path, "jsonl", rows), "mixed.jsonl line 2: label 1 is an integer",
                 "3 rows of this file have string labels")
    assert "line 1:" not in msg and "line 3:" not in msg


def test_string_label_among_integer_labels_is_refused(env):
    path = env[0] / "mostly_ints.jsonl"
    rows = [("first text", 0), ("second text", 1), ("third text", "1"), ("fourth", 0)]
    _fails(env, _write(path, "jsonl", rows), "mostly_ints.jsonl line 3: label '1' is a string",
           "3 rows of this file have integer labels")


def test_integer_labels_are_fine_on_their_own(env):
    tmp, cfg, store = env
    path = _write(tmp / "ints.parquet", "parquet", [("first text", 0), ("second text", 1)])
    assert ingest_file(store, cfg, path).by_label == {"0": 1, "1": 1}


def test_integer_labels_in_a_project_of_named_labels_are_refused(env):
    tmp, cfg, store = env
    ingest_file(store, cfg, write_csv(tmp / "named.csv", make_rows(3)), split="train")
    path = _write(tmp / "ints.parquet", "parquet", [("a new text", 0), ("another new text", 2)])
    _fails_keeping(env, path, "ints.parquet row 1: label 0 is an integer, but the project's labels are names "
                   "(account, billing, outage)", "ints.parquet row 2: label 2", split="train")


def test_integer_label_against_configured_names_says_so(env):
    tmp, cfg, _ = env
    cfg.project.labels = ["billing", "outage"]
    path = _write(tmp / "i.jsonl", "jsonl", [("a text", 1)])
    _fails(env, path, "i.jsonl line 1: label 1 is an integer, but the project's labels are names "
           "(billing, outage)", "write the label's name")


# -- labels that differ only by case or spacing ---------------------------------------------------

def test_configured_label_differing_in_case_suggests_it(env):
    tmp, cfg, _ = env
    cfg.project.labels = ["Billing", "Outage"]
    path = write_csv(tmp / "case.csv", [("a text", "Billing"), ("b text", "billing"), ("c text", "OUTAGE")])
    _fails(env, path, "case.csv line 3: label 'billing' is not in the project's label set (Billing, Outage); "
           "did you mean 'Billing'?", "case.csv line 4: label 'OUTAGE'", "did you mean 'Outage'?")


def test_configured_label_differing_in_inner_spaces_suggests_it(env):
    tmp, cfg, _ = env
    cfg.project.labels = ["Billing issue", "Outage"]
    path = write_csv(tmp / "sp.csv", [("a text", "billing  issue")])
    _fails(env, path, "did you mean 'Billing issue'?")


def test_heldout_label_differing_in_case_suggests_stored_one(env):
    tmp, cfg, store = env
    ingest_file(store, cfg, write_csv(tmp / "train.csv", [("x text", "Billing"), ("y text", "Outage")]),
                split="train")
    path = write_csv(tmp / "test.csv", [("a brand new text", "billing ")])
    _fails_keeping(env, path, "test.csv line 2: label 'billing' is not in the project's label set",
                   "did you mean 'Billing'?", split="heldout")


def test_train_label_differing_in_case_from_stored_one_is_refused(env):
    tmp, cfg, store = env
    ingest_file(store, cfg, write_csv(tmp / "one.csv", [("x text", "Billing"), ("y text", "Outage")]),
                split="train")
    path = write_csv(tmp / "two.csv", [("a new text", "billing"), ("another", "Shipping")])
    msg = _fails_keeping(env, path, "two.csv line 2: label 'billing' differs from 'Billing', a label the "
                         "project already has, only in case or spacing; did you mean 'Billing'?",
                         split="train")
    assert "Shipping" not in msg


def test_labels_colliding_within_a_file_are_refused(env):
    path = write_csv(env[0] / "col.csv", [("one text", "Billing"), ("two text", "billing"),
                                          ("three text", "Billing"), ("four text", "Outage")])
    msg = _fails(env, path, "col.csv: 1 of 4 rows cannot be ingested",
                 "col.csv line 3: label 'billing' differs from 'Billing' (2 rows, first on line 2) only in "
                 "case or spacing", "did you mean 'Billing'?")
    assert "line 2: label" not in msg and "line 4:" not in msg


def test_configured_label_with_a_typo_suggests_the_nearest(env):
    tmp, cfg, _ = env
    cfg.project.labels = ["billing", "outage"]
    path = write_csv(tmp / "typo.csv", [("a text", "biling")])
    _fails(env, path, "typo.csv line 2: label 'biling' is not in the project's label set (billing, outage); "
           "did you mean 'billing'?")

"""Ingest real human data: read, validate every row, normalise, dedup, split train / held-out.

Nothing is written unless the whole file is valid, and every input row ends up in the
``ingest_rows`` log as ``added`` or ``duplicate`` (with the record it duplicates), so no row
disappears unexplained.

Formats: CSV (``.csv``, ``.tsv``), JSON Lines (``.jsonl``, ``.ndjson``) and Parquet
(``.parquet``), text files in UTF-8. Columns are mapped with ``text_column`` / ``label_column``.
What a field may hold (control characters, label types and spellings) is checked in
``_ingest_checks``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _ingest_checks as checks
from .config import Config
from .errors import IngestError
from .records import Record, normalize_text, text_hash
from .sources import SourceInfo
from .store import IngestRow, Store

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
SPLIT_CHOICES = ("auto", "train", "heldout", "pool")


@dataclass
class IngestReport:
    source: str
    batch: str
    rows: int = 0
    added: int = 0
    duplicates: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    already_ingested: bool = False


@dataclass(frozen=True)
class Column:
    """Where one field of a row is read from: its column (CSV, Parquet) or key (JSONL), the
    command-line option that maps it, and whether a file must have it."""

    name: str
    option: str
    required: bool = True


@dataclass(frozen=True)
class _Row:
    where: str                  # "line 12" or "row 12", for messages
    number: int                 # 1-based position among data rows
    values: dict[str, object]   # field -> raw value (_MISSING when the row lacks it)

    @property
    def text(self) -> object:
        return self.values.get("text", _MISSING)

    @property
    def label(self) -> object:
        return self.values.get("label", _MISSING)


def _classify_columns(text_col: str, label_col: str | None) -> dict[str, Column]:
    out = {"text": Column(text_col, "--text-column")}
    if label_col is not None:
        out["label"] = Column(label_col, "--label-column")
    return out


def read_rows(path: Path, columns: dict[str, Column]) -> list[_Row]:
    """Every data row of a CSV, JSONL or Parquet file, with the fields ``columns`` names."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise IngestError(f"{path.name}: unsupported file type {path.suffix!r}; use one of "
                          f"{', '.join(sorted(FORMATS))}")
    if kind == "parquet":
        return list(_read_parquet(path, columns))
    text = checks.decode_utf8(path.name, path.read_bytes())
    if kind == "csv":
        return _read_csv(path, text, columns)
    return list(_read_jsonl(path, text, columns))


def _read_rows(path: Path, text_col: str, label_col: str | None) -> list[_Row]:
    return read_rows(path, _classify_columns(text_col, label_col))


def _missing_columns(path: Path, present: list[str], columns: dict[str, Column]) -> IngestError | None:
    missing = [c for c in columns.values() if c.required and c.name not in present]
    if not missing:
        return None
    parts = [f"no column {c.name!r}; map the right one with {c.option}" for c in missing]
    return IngestError(f"{path.name}: " + "; ".join(parts) + f" (columns found: {', '.join(present) or 'none'})")


@contextmanager
def _csv_field_limit(at_least: int) -> Iterator[None]:
    """Raise the CSV reader's field limit for one read, then put the process-wide value back.

    The reader's default (131,072 characters) would fail a long field as malformed CSV; with
    the limit at the file's length no field can hit it, so a long field is read and then
    reported by the ``[ingest] max_chars`` check with its column name. The cap is the
    largest value every platform's C ``long`` holds.
    """
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, min(at_least, 2**31 - 1)))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_csv(path: Path, text: str, columns: dict[str, Column]) -> list[_Row]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # newline="": only \n, \r and \r\n end a line (not U+2028 and kin), and the csv module
    # sees line breaks inside quoted fields as they are.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    with _csv_field_limit(len(text) + 1):
        return list(_csv_rows(path, reader, delimiter, columns))


def _csv_rows(path: Path, reader: Any, delimiter: str, columns: dict[str, Column]) -> Iterator[_Row]:
    header = next(reader, None)
    if header is None:
        raise IngestError(f"{path.name}: the file is empty; expected a header row with "
                          + " and ".join(repr(c.name) for c in columns.values() if c.required))
    header = [h.strip() for h in header]
    error = _missing_columns(path, header, columns)
    if error:
        raise error
    index = {f: header.index(c.name) for f, c in columns.items() if c.name in header}
    number = 0
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise IngestError(f"{path.name} line {start}: malformed CSV ({exc}); check the quoting "
                              "of that row") from exc
        if not values:
            continue
        number += 1
        if len(values) != len(header):
            raise IngestError(f"{path.name} line {start}: {len(values)} fields where the header has "
                              f"{len(header)}; quote text that contains '{delimiter}'")
        yield _Row(f"line {start}", number, {f: values[i] for f, i in index.items()})


def _read_jsonl(path: Path, text: str, columns: dict[str, Column]) -> Iterator[_Row]:
    number = 0
    # Split on \n alone: str.splitlines() would also break at U+2028, U+0085 and others,
    # which JSON allows raw inside a string.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            # strict=False takes raw control characters inside strings (a raw tab is common in
            # hand-made files); the field checks then accept whitespace and locate the rest.
            obj = json.loads(line, strict=False)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{path.name} line {lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                              "each line must be one JSON object") from exc
        if not isinstance(obj, dict):
            raise IngestError(f"{path.name} line {lineno}: expected a JSON object, got "
                              f"{type(obj).__name__}; each line must be one JSON object")
        number += 1
        yield _Row(f"line {lineno}", number, {f: obj.get(c.name, _MISSING) for f, c in columns.items()})


def _read_parquet(path: Path, columns: dict[str, Column]) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise IngestError(f"{path.name}: cannot read as Parquet ({exc})") from exc
    error = _missing_columns(path, table.column_names, columns)
    if error:
        raise error
    data = {f: table.column(c.name).to_pylist() for f, c in columns.items() if c.name in table.column_names}
    for i in range(table.num_rows):
        yield _Row(f"row {i + 1}", i + 1, {f: values[i] for f, values in data.items()})


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()


def _validate(path: Path, rows: list[_Row], cfg: Config, text_col: str, label_col: str | None,
              known_labels: list[str], existing_labels: list[str]) -> tuple[list[tuple[_Row, str, str]], list[str]]:
    """Check every row; return the clean ones (row, normalised text, label) and the problems, in row order.

    ``known_labels`` is the enforced label set (may be empty); ``existing_labels`` what the
    project already holds, against which a new label may not be a respelling or an integer.
    ``label_col`` None: the rows are unlabelled (the pool); their label is "".
    """
    problems: list[tuple[int, str]] = []
    clean: list[tuple[_Row, str, str]] = []
    mode = cfg.ingest.normalize
    for row in rows:
        loc = f"{path.name} {row.where}"
        problem, text, label = _check_row(loc, row, cfg, text_col, label_col, known_labels, existing_labels)
        if problem:
            problems.append((row.number, problem))
            continue
        text = normalize_text(text, mode)
        if not text:
            problems.append((row.number, f"{loc}: {text_col!r} is empty" +
                             (" after normalisation" if str(row.text).strip() else "") + "; remove the row"))
            continue
        clean.append((row, text, label))
    if label_col is None:
        return clean, [message for _, message in sorted(problems, key=lambda p: p[0])]
    problems += checks.label_type_problems(path.name, [(r.number, r.where, r.label) for r, _, _ in clean])
    problems += checks.label_collision_problems(path.name, [(r.number, r.where, lab) for r, _, lab in clean])
    return clean, [message for _, message in sorted(problems, key=lambda p: p[0])]


def _check_row(loc: str, row: _Row, cfg: Config, text_col: str, label_col: str | None, known: list[str],
               existing: list[str]) -> tuple[str | None, str, str]:
    """(problem or None, raw text, stripped label) for one row; the first problem found is reported."""
    if row.text is _MISSING or row.text is None:
        return (f"{loc}: no {text_col!r}; every row needs text (map another column with --text-column)",
                "", "")
    if not isinstance(row.text, str):
        return f"{loc}: {text_col!r} must be text, got {type(row.text).__name__} {row.text!r}", "", ""
    if label_col is None:                       # an unlabelled pool row: its text is all there is
        problem = checks.control_problem(loc, text_col, row.text)
        if problem is None and len(row.text) > cfg.ingest.max_chars:
            problem = (f"{loc}: {text_col!r} is {len(row.text)} characters, over [ingest] max_chars = "
                       f"{cfg.ingest.max_chars}; split the text, or raise [ingest] max_chars in goldloop.toml")
        return problem, row.text, ""
    if row.label is _MISSING or row.label is None or (isinstance(row.label, str) and not row.label.strip()):
        return (f"{loc}: no {label_col!r}; every gold row needs a label (map another column with "
                "--label-column, or fill it in)", "", "")
    if isinstance(row.label, bool) or not isinstance(row.label, (str, int)):
        return f"{loc}: {label_col!r} must be a string or integer, got {row.label!r}", "", ""
    label = str(row.label).strip()
    problem = (checks.control_problem(loc, text_col, row.text)
               or checks.control_problem(loc, label_col, label, label=True)
               or checks.label_problem(loc, row.label, label, known, existing))
    if problem is None and len(row.text) > cfg.ingest.max_chars:
        problem = (f"{loc}: {text_col!r} is {len(row.text)} characters, over [ingest] max_chars = "
                   f"{cfg.ingest.max_chars}; split the text, or raise [ingest] max_chars in goldloop.toml")
    return problem, row.text, label


def ingest_file(store: Store, cfg: Config, path: Path | str, *, text_column: str | None = None,
                label_column: str | None = None, split: str = "auto", prompt_column: str | None = None,
                response_column: str | None = None, messages_column: str | None = None,
                source: SourceInfo | None = None) -> IngestReport:
    """Validate and ingest one file of gold data; all or nothing. For ``[project] task =
    "generate"`` the rows are prompt → response pairs (see :mod:`goldloop.ingest_pairs`).

    ``source``: the file's source class (:mod:`goldloop.sources`; default first-party), and for a
    public source its citation and licence, stored on every record it adds.

    ``split``: ``auto`` sets a stratified, seeded share aside as held-out real data; ``train`` or
    ``heldout`` puts every row of the file in that split (e.g. an official test set); ``pool``
    takes real, unlabelled records (no label column needed; one present is ignored), whose
    labels the ``suggest`` stage proposes for reviewers to confirm. A pool row with the text of a
    gold record (held-out ones included) is logged as a duplicate and never stored.
    """
    path = Path(path)
    if split not in SPLIT_CHOICES:
        raise IngestError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if cfg.project.task == "generate":
        if text_column or label_column:
            raise IngestError("--text-column and --label-column map classify projects; this project's [project] task "
                              "is generate: map pairs with --prompt-column and --response-column (or --messages-column)")
        from .ingest_pairs import ingest_pairs

        return ingest_pairs(store, cfg, path, prompt_column=prompt_column, response_column=response_column,
                            messages_column=messages_column, split=split, source=source)
    if prompt_column or response_column or messages_column:
        raise IngestError("--prompt-column, --response-column and --messages-column map generate projects; this "
                          "project's [project] task is classify: map texts with --text-column and --label-column")
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    text_col = text_column or cfg.ingest.text_column
    label_col = None if split == "pool" else (label_column or cfg.ingest.label_column)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    source = source or SourceInfo()
    batch = hashlib.sha256(json.dumps([digest, text_col, label_col, split, cfg.ingest.normalize,
                                       cfg.ingest.heldout_fraction, cfg.project.seed]
                                      + ([source.params()] if source.params() else [])).encode()).hexdigest()[:16]
    report = IngestReport(source=path.name, batch=batch)
    if store.ingest_rows(batch):
        report.already_ingested = True
        return report

    rows = _read_rows(path, text_col, label_col)
    if not rows:
        raise IngestError(f"{path.name}: no data rows; nothing to ingest")
    # A configured label set is enforced; otherwise gold defines it, but a held-out-only file
    # may not bring labels that no training data has, and no file may respell a stored label.
    stored = store.labels()
    known = list(cfg.project.labels) or (stored if split == "heldout" else [])
    clean, problems = _validate(path, rows, cfg, text_col, label_col, known, known or stored)
    if problems:
        raise IngestError(f"{path.name}: {len(problems)} of {len(rows)} rows cannot be ingested; nothing "
                          "was written. Fix these and run the same command again:", problems)

    seen = store.text_hashes(origin="gold")
    if split == "pool":
        seen = {**store.text_hashes(origin="pool", split="pool"), **seen}
    first_in_file: dict[str, tuple[_Row, str]] = {}
    log: list[IngestRow] = []
    in_file_dups: list[tuple[_Row, _Row, str]] = []     # (row, first row with that text, why)
    fresh: list[tuple[_Row, str, str]] = []
    for row, text, label in clean:
        h = text_hash(text)
        if h in seen:
            prior = store.get_record(seen[h])
            kind = ("held-out record" if prior is not None and prior.split == "heldout" else
                    "pool record" if prior is not None and prior.origin == "pool" else "gold record")
            why = f"same text as {kind} {seen[h]}"
            if kind == "held-out record" and split == "pool":
                why += " (held-out data is never shown to a reviewer or trained on)"
            if prior is not None and split != "pool" and prior.label != label:
                why += f" (labelled {prior.label!r} there, {label!r} here; the first label is kept)"
            log.append(IngestRow(batch, path.name, row.number, seen[h], "duplicate", why))
        elif h in first_in_file:
            first, first_label = first_in_file[h]
            why = f"same text as {first.where}"
            if first_label != label and split != "pool":
                why += f" (labelled {first_label!r} there, {label!r} here; the first label is kept)"
            in_file_dups.append((row, first, why))
        else:
            first_in_file[h] = (row, label)
            fresh.append((row, text, label))

    splits = _assign_splits(fresh, split, cfg)
    records: list[Record] = []
    record_of_row: dict[int, str] = {}
    for (row, text, label), which in zip(fresh, splits):
        if which == "pool":
            rec = Record.pool(text, source=f"{path.name} {row.where}")
        else:
            rec = Record.gold(text, label, which, source=f"{path.name} {row.where}")
        rec = source.apply(rec)
        records.append(rec)
        record_of_row[row.number] = rec.id
        log.append(IngestRow(batch, path.name, row.number, rec.id, "added",
                             "pool (unlabelled)" if which == "pool" else f"gold/{which}"))
    log += [IngestRow(batch, path.name, row.number, record_of_row[first.number], "duplicate", why)
            for row, first, why in in_file_dups]

    with store.transaction():
        store.add_records(records)
        store.add_ingest_rows(log)
        store.log_event("ingest", {"source": path.name, "batch": batch, "rows": len(rows),
                                   "added": len(records), "split": split, **source.params()})
    report.rows = len(rows)
    report.added = len(records)
    report.duplicates = len(rows) - len(records)
    for rec in records:
        report.by_split[rec.split or ""] = report.by_split.get(rec.split or "", 0) + 1
        if rec.label:
            report.by_label[rec.label] = report.by_label.get(rec.label, 0) + 1
    return report


def read_labelled(path: Path | str, cfg: Config, *, text_column: str | None = None,
                  label_column: str | None = None) -> list[tuple[str, str]]:
    """(normalised text, label) of every row of a labelled file, checked like ingest but stored
    nowhere: for the labels a simulated reviewer answers from, or its training data."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    text_col = text_column or cfg.ingest.text_column
    label_col = label_column or cfg.ingest.label_column
    rows = _read_rows(path, text_col, label_col)
    clean, problems = _validate(path, rows, cfg, text_col, label_col, list(cfg.project.labels), [])
    if problems:
        raise IngestError(f"{path.name}: {len(problems)} of {len(rows)} rows cannot be read:", problems)
    return [(text, label) for _, text, label in clean]


def _assign_splits(rows: list[tuple[_Row, str, str]], split: str, cfg: Config) -> list[str]:
    """Stratified, seeded held-out split: each label keeps the same share aside."""
    if split != "auto":
        return [split] * len(rows)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, (_, _, label) in enumerate(rows):
        by_label[label].append(i)
    out = ["train"] * len(rows)
    rng = random.Random(cfg.project.seed)
    for label in sorted(by_label):
        idx = by_label[label]
        if len(idx) < 2:
            continue                            # one row: it must train, not be held out
        n_out = round(len(idx) * cfg.ingest.heldout_fraction)
        n_out = max(n_out, min(cfg.ingest.min_heldout_per_label, len(idx) - 1)) if cfg.ingest.heldout_fraction else 0
        n_out = min(n_out, len(idx) - 1)
        for i in rng.sample(idx, n_out):
            out[i] = "heldout"
    return out

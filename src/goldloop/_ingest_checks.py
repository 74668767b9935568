"""Checks ingest applies to raw input: encoding, invisible characters, label spelling and type.

Each check returns (or raises) messages in the ingest style: file, line, field, and the fix.
None of them writes anything; ``ingest.py`` collects the problems and refuses the whole file.

Rules they enforce:

- A text file is UTF-8. Otherwise the error names the line and character of the first bad
  byte and the likely encoding (UTF-16 or UTF-32 by their byte-order mark or zero bytes,
  else Windows-1252 or Latin-1, showing what the byte would be there).
- Tab, newline and carriage return in text are whitespace that normalisation collapses.
  Every other C0/C1 control character, U+FEFF (a byte-order mark left inside text, usually
  by joining files) and a lone surrogate (from a JSON ``\\ud83d`` escape) is an error. A
  label is one line, so it may hold none of these, tab and line breaks included.
- A label column holds names or integers, not both: in a mixed file, each row of the less
  common type is an error. Integer labels are also refused in a project whose labels
  (configured, or already stored) are names.
- Two labels that are equal after case folding and collapsing spaces (``Billing`` and
  ``billing``) are one label spelled two ways: an error with ``did you mean``, whether the
  other spelling is configured, already stored, or more common in the same file.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter

from .errors import IngestError
from .records import did_you_mean, label_key

_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")
_CONTROL_IN_LABEL = re.compile("[\x00-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")
_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x0B: "VT", 0x0C: "FF", 0x1B: "ESC", 0x7F: "DEL",
          0x85: "NEL"}
_INTEGER = re.compile(r"-?\d+")
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _resave(name: str, encoding: str) -> str:
    excel = "in Excel: Save As 'CSV UTF-8'; " if name.lower().endswith((".csv", ".tsv")) else ""
    return f"re-save it as UTF-8 ({excel}or `iconv -f {encoding} -t UTF-8 OLD > NEW`)"


def decode_utf8(name: str, data: bytes) -> str:
    """The file's text, or an IngestError naming where it stops being UTF-8 and what it may be.

    >>> decode_utf8("t.csv", b"text,label\\r\\nok,a\\r\\n")
    'text,label\\r\\nok,a\\r\\n'
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise IngestError(f"{name}: this file is {encoding} (it starts with a {encoding} byte-order "
                              f"mark), not UTF-8; " + _resave(name, encoding))
    sample = data[:400]
    if len(sample) >= 4 and sample.count(0) * 4 >= len(sample):    # ASCII as UTF-16: every other byte 0
        order = "UTF-16LE" if sample[1::2].count(0) >= sample[0::2].count(0) else "UTF-16BE"
        raise IngestError(f"{name}: this file looks like UTF-16 without a byte-order mark (every other "
                          "byte is zero), not UTF-8; " + _resave(name, order))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(_not_utf8(name, data, exc)) from exc


def _not_utf8(name: str, data: bytes, exc: UnicodeDecodeError) -> str:
    lines = re.split(r"\r\n|\r|\n", data[:exc.start].decode("utf-8-sig"))
    bad = data[exc.start:exc.start + 1]
    for codec, label, iconv in (("cp1252", "Windows-1252", "WINDOWS-1252"), ("latin-1", "Latin-1", "ISO-8859-1")):
        try:
            data.decode(codec)
        except UnicodeDecodeError:
            continue
        return (f"{name} line {len(lines)}, character {len(lines[-1]) + 1}: byte 0x{bad[0]:02X} is not UTF-8, "
                f"so the file is in another encoding; it may be {label}, where that byte is "
                f"{bad.decode(codec)!r}; " + _resave(name, iconv))
    raise AssertionError("every byte string decodes as Latin-1")


def control_problem(loc: str, column: str, value: str, *, label: bool = False) -> str | None:
    """A message for the first forbidden invisible character in one field, or None.

    >>> control_problem("t.csv line 2", "label", "a\\x00", label=True)
    "t.csv line 2: 'label' holds the control character U+0000 (NUL) at character 2; remove it from the file"
    """
    pattern = _CONTROL_IN_LABEL if label else _CONTROL_IN_TEXT
    found = pattern.search(value)
    if found is None:
        return None
    point = ord(found.group())
    code = f"U+{point:04X}"
    if 0xD800 <= point <= 0xDFFF:
        what, fix = (f"a lone surrogate {code}", f"fix the escape \\u{point:04x}: an emoji or other character "
                     "outside the Basic Multilingual Plane is written as a pair of escapes, or unescaped")
    elif point == 0xFEFF:
        what, fix = f"the byte-order mark {code}", "remove it (it is usually left over from joining files)"
    elif chr(point) in "\t\n\r":
        what, fix = f"a {'tab' if point == 9 else 'line break'} {code}", "a label is one line: remove it"
    else:
        name = f" ({_NAMES[point]})" if point in _NAMES else ""
        what, fix = f"the control character {code}{name}", "remove it from the file"
        if not label:
            fix += " (tab, newline and carriage return are fine)"
    count = len(pattern.findall(value))
    more = f" ({count} in all)" if count > 1 else ""
    return f"{loc}: {column!r} holds {what} at character {found.start() + 1}{more}; {fix}"


def label_problem(loc: str, raw: object, label: str, known: list[str], existing: list[str]) -> str | None:
    """A message if one row's label clashes with the project's labels, or None.

    ``known`` is the enforced label set (may be empty); ``existing`` is what the project already
    has, enforced or not (a train file may add new labels, but not respell an old one).
    """
    if label in known:
        return None
    names = [x for x in existing if not _INTEGER.fullmatch(x)]
    if isinstance(raw, int) and names:
        return (f"{loc}: label {raw} is an integer, but the project's labels are names "
                f"({', '.join(existing)}); write the label's name instead")
    if known:
        guess = did_you_mean(label, known)
        hint = f"did you mean {guess!r}? " if guess else ""
        return (f"{loc}: label {label!r} is not in the project's label set ({', '.join(known)}); {hint}fix "
                "the row, or add the label to [project] labels in goldloop.toml (ingest its training rows "
                "first)")
    guess = None if label in existing else did_you_mean(label, existing, close=False)
    if guess:
        return (f"{loc}: label {label!r} differs from {guess!r}, a label the project already has, only in "
                f"case or spacing; did you mean {guess!r}? Write it the same way, or it becomes a second label")
    return None


def label_type_problems(name: str, rows: list[tuple[int, str, object]]) -> list[tuple[int, str]]:
    """Rows whose label type (integer or string) is the less common one in the file.

    ``rows`` are (row number, where, raw label); a tie counts the first row's type as the common one.
    """
    ints = [r for r in rows if isinstance(r[2], int)]
    strs = [r for r in rows if isinstance(r[2], str)]
    if not ints or not strs:
        return []
    first_is_int = isinstance(rows[0][2], int)
    minority_is_int = len(ints) < len(strs) or (len(ints) == len(strs) and not first_is_int)
    few, many = (ints, strs) if minority_is_int else (strs, ints)
    kind, other = ("an integer", "string") if minority_is_int else ("a string", "integer")
    fix = "write it as a name" if minority_is_int else "write it as an integer, without quotes"
    return [(number, f"{name} {where}: label {raw!r} is {kind}, but {len(many)} rows of this file have {other} "
                     f"labels (such as {many[0][2]!r}); a label column holds names or integers, not both: "
                     f"{fix}") for number, where, raw in few]


def label_collision_problems(name: str, rows: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """Rows whose label is a less common spelling (case, spaces) of another label in the file.

    ``rows`` are (row number, where, label); the most common spelling wins, the first seen on a tie.
    """
    spellings: dict[str, Counter[str]] = {}
    first: dict[str, str] = {}
    for _, where, label in rows:
        spellings.setdefault(label_key(label), Counter())[label] += 1
        first.setdefault(label, where)
    problems = []
    for number, where, label in rows:
        counts = spellings[label_key(label)]
        best = counts.most_common(1)[0][0]
        if label != best:
            problems.append((number, f"{name} {where}: label {label!r} differs from {best!r} ({counts[best]} "
                                     f"rows, first on {first[best]}) only in case or spacing, so they would "
                                     f"become two labels; did you mean {best!r}? Spell it one way throughout"))
    return problems

"""Every record's source class: where its text came from, so a team can say which training rows
came from its own records, which from an LLM or a simulator, and which from public sources.

- ``first_party``: the team's own records (logs, tickets, claims), ingested; the default.
- ``llm``: drafted by a language model, and reviewers' edits of such drafts.
- ``simulator``: produced by a simulator (ingested with ``--source simulator``).
- ``external``: a public source (a paper, a published data set), ingested with ``--source
  external``, a citation (``doi:``, ``arXiv:``, ``hf:`` data set id, or a URL) and a licence.

A pool row a reviewer labelled, or a self-training row, keeps the class of the pool record it
came from. Ingest stores the class (when it is not ``first_party``), the citation and the
licence in the record's provenance ``params``; :func:`source_class` reads them back.

>>> info = SourceInfo.parse("external", "arXiv:2308.12032", "CC-BY-4.0")
>>> info.params()
{'source_class': 'external', 'citation': 'arXiv:2308.12032', 'license': 'CC-BY-4.0'}
>>> SourceInfo.parse("first_party").params()
{}
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .errors import GoldloopError
from .records import SOURCE_KEYS, Record

SOURCE_CLASSES = ("first_party", "llm", "simulator", "external")
INGESTED_CLASSES = ("first_party", "simulator", "external")

_CITATION = (
    ("doi", re.compile(r"^doi:10\.\d{4,9}/\S+$", re.IGNORECASE)),
    ("arXiv", re.compile(r"^arxiv:(\d{4}\.\d{4,5}|[a-z.-]+/\d{7})(v\d+)?$", re.IGNORECASE)),
    ("hf", re.compile(r"^hf:[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")),
    ("url", re.compile(r"^https?://[^\s/]+\.[^\s/]+(/\S*)?$")),
)
_LICENSE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")
CITATION_FORMS = "doi:10.NNNN/..., arXiv:NNNN.NNNNN, hf:owner/dataset or an http(s) URL"


class SourceError(GoldloopError):
    """A source class, citation or licence given at ingest is not one goldloop takes."""


def citation_kind(citation: str) -> str | None:
    """``doi``, ``arXiv``, ``hf`` or ``url``; None when ``citation`` is none of them.

    >>> citation_kind("doi:10.1000/xyz123"), citation_kind("hf:stanfordnlp/imdb"), citation_kind("a paper")
    ('doi', 'hf', None)
    """
    for kind, pattern in _CITATION:
        if pattern.match(citation.strip()):
            return kind
    return None


@dataclass(frozen=True)
class SourceInfo:
    """The source class of an ingested file, and for an external one its citation and licence."""

    source_class: str = "first_party"
    citation: str = ""
    license: str = ""

    @classmethod
    def parse(cls, source_class: str = "first_party", citation: str | None = None,
              license: str | None = None) -> "SourceInfo":
        """Checked: a known class; a citation in a known form, required for ``external`` and only
        taken there; a licence (an SPDX-style id such as ``CC-BY-4.0``) only for ``external``."""
        source_class = (source_class or "first_party").strip()
        citation, license = (citation or "").strip(), (license or "").strip()
        if source_class not in INGESTED_CLASSES:
            raise SourceError(f"--source must be one of {', '.join(INGESTED_CLASSES)}, not {source_class!r} "
                              "(LLM drafts get the class llm by themselves)")
        if source_class != "external" and (citation or license):
            raise SourceError("--cite and --license describe a public source: give them with --source external")
        if source_class == "external":
            if not citation:
                raise SourceError(f"--source external needs --cite: where the data was published ({CITATION_FORMS})")
            if citation_kind(citation) is None:
                raise SourceError(f"--cite {citation!r} is not a citation goldloop can check: use {CITATION_FORMS}")
            if license and not _LICENSE.match(license):
                raise SourceError(f"--license {license!r} is not a licence id: give an SPDX id such as CC-BY-4.0, "
                                  "MIT or Apache-2.0 (one word, no spaces)")
        return cls(source_class, citation, license)

    def params(self) -> dict[str, str]:
        """What a record's provenance ``params`` hold of it (nothing for the default class)."""
        if self.source_class == "first_party":
            return {}
        out = {"source_class": self.source_class}
        if self.citation:
            out["citation"] = self.citation
        if self.license:
            out["license"] = self.license
        return out

    def apply(self, record: Record) -> Record:
        """``record`` with this source in its provenance (unchanged for the default class)."""
        extra = self.params()
        if not extra:
            return record
        kept = {k: v for k, v in record.provenance.params.items() if k not in SOURCE_KEYS}
        return replace(record, provenance=replace(record.provenance, params={**kept, **extra}))


def source_class(record: Record) -> str:
    """The record's source class (see the module's docstring).

    >>> source_class(Record.gold("the printer is jammed", "hardware"))
    'first_party'
    """
    stored = record.provenance.params.get("source_class")
    if record.origin in ("synthetic", "edited"):
        return stored if stored == "simulator" else "llm"
    return stored if stored in SOURCE_CLASSES else "first_party"


class SourceTally:
    """Rows per source class and per external citation, summed one record at a time."""

    def __init__(self) -> None:
        self.classes: Counter[str] = Counter()
        self.cited: Counter[tuple[str, str]] = Counter()

    def add(self, r: Record) -> str:
        """Count ``r``; returns its source class."""
        cls = source_class(r)
        self.classes[cls] += 1
        if cls == "external":
            self.cited[(str(r.provenance.params.get("citation", "")), str(r.provenance.params.get("license", "")))] += 1
        return cls

    def counts(self) -> dict[str, int]:
        """Rows per source class, every class named (0 when absent)."""
        return {c: self.classes.get(c, 0) for c in SOURCE_CLASSES}

    def citations(self) -> list[dict[str, Any]]:
        """The external sources counted: citation, licence ("" when none was given) and rows."""
        return [{"citation": c, "license": lic, "rows": n} for (c, lic), n in sorted(self.cited.items())]


def _tally(records: Iterable[Record]) -> SourceTally:
    tally = SourceTally()
    for r in records:
        tally.add(r)
    return tally


def class_counts(records: Iterable[Record]) -> dict[str, int]:
    """Rows per source class, every class named (0 when absent)."""
    return _tally(records).counts()


def citations_of(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The external sources behind ``records``: citation, licence ("" when none was given) and rows."""
    return _tally(records).citations()

"""Cheap text rules: length, repetition, patterns and red lines, label set, language, exact
duplicates and exact leakage."""

from __future__ import annotations

import re

from ..errors import StageError
from ..records import Record, Verdict, text_hash
from ._base import Filter, FilterContext


class Length(Filter):
    """Drops empty candidates and those outside [filter] min_words .. max_words."""

    name = "length.v1"
    scope = "record"
    reads = ("text",)

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        lo, hi = ctx.cfg.filter.min_words, ctx.cfg.filter.max_words
        out = []
        for rec in candidates:
            n = len(rec.text.split())
            if n == 0:
                out.append(self.verdict(rec, False, 0, "empty text", ctx))
            elif n < lo:
                out.append(self.verdict(rec, False, n, f"{n} words, fewer than min_words = {lo}", ctx))
            elif n > hi:
                out.append(self.verdict(rec, False, n, f"{n} words, more than max_words = {hi}", ctx))
            else:
                out.append(self.verdict(rec, True, n, f"{n} words", ctx))
        return out


def distinct_bigram_ratio(text: str) -> float:
    """Distinct word bigrams / all word bigrams; 1.0 for texts too short to have two.

    >>> distinct_bigram_ratio("the sda the sda the sda")
    0.4
    """
    words = text.split()
    bigrams = list(zip(words, words[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else 1.0


class Repetition(Filter):
    """Drops degenerate text that loops on itself ("the sda sda sda ..."), common in small models."""

    name = "repetition.v1"
    scope = "record"
    reads = ("text",)

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        floor = ctx.cfg.filter.min_distinct_bigrams
        out = []
        for rec in candidates:
            ratio = distinct_bigram_ratio(rec.text)
            keep = ratio >= floor
            reason = (f"distinct-bigram ratio {ratio:.2f}" + ("" if keep else f" below {floor:.2f}: "
                                                             "repetition loop"))
            out.append(self.verdict(rec, keep, ratio, reason, ctx))
        return out


class ExactDuplicate(Filter):
    """Drops a candidate identical to a gold-train record, an earlier synthetic record, or an
    earlier candidate of this round (the first occurrence is kept)."""

    name = "exact_dup.v1"
    reads = ("text", "gold-train and earlier synthetic text hashes")

    def known_copies(self, candidates: list[Record], ctx: FilterContext) -> list[str | None]:
        """For each candidate, why it copies a gold-train or earlier synthetic record, or None:
        the part of the verdict that needs no other candidate of the round."""
        def index() -> tuple[dict[str, str], dict[str, str]]:
            gold: dict[str, str] = {}
            earlier: dict[str, str] = {}
            for old in ctx.known:
                (gold if old.origin == "gold" else earlier).setdefault(text_hash(old.text), old.id)
            return gold, earlier

        gold, earlier = ctx.keep(f"{self.name}:known", index)
        out: list[str | None] = []
        for rec in candidates:
            h = text_hash(rec.text)
            out.append(f"copy of gold-train record {gold[h]}" if h in gold else
                       f"same text as earlier synthetic record {earlier[h]}" if h in earlier else None)
        return out

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        first_this_round: dict[str, str] = {}
        out = []
        for rec, copy in zip(candidates, self.known_copies(candidates, ctx)):
            h = text_hash(rec.text)
            if copy is None:
                first_this_round.setdefault(h, rec.id)
            out.append(self.decide(rec, copy, first_this_round.get(h) if copy is None else None, ctx))
        return out

    def decide(self, rec: Record, copy: str | None, first: str | None, ctx: FilterContext) -> Verdict:
        """The verdict from its parts: a known copy, else the round's first candidate with this text."""
        if copy is not None:
            return self.verdict(rec, False, 1.0, copy, ctx)
        if first is not None and first != rec.id:
            return self.verdict(rec, False, 1.0, f"same text as candidate {first}", ctx)
        return self.verdict(rec, True, 0.0, "new text", ctx)


class Patterns(Filter):
    """Drops candidates that miss a required pattern, hit a forbidden one, or cross a red line.

    Patterns are regular expressions from [filter] required_patterns / forbidden_patterns,
    matched case-insensitively; red lines are the literal phrases of [generate] red_lines.
    """

    name = "patterns.v1"
    scope = "record"
    reads = ("text", "[filter] required_patterns, forbidden_patterns", "[generate] red_lines")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        required = [(p, re.compile(p, re.IGNORECASE)) for p in ctx.cfg.filter.required_patterns]
        forbidden = [(p, re.compile(p, re.IGNORECASE)) for p in ctx.cfg.filter.forbidden_patterns]
        red_lines = [line.strip().lower() for line in ctx.cfg.generate.red_lines if line.strip()]
        out = []
        for rec in candidates:
            lowered = rec.text.lower()
            problems = [f"misses required pattern {p!r}" for p, rx in required if not rx.search(rec.text)]
            problems += [f"matches forbidden pattern {p!r}" for p, rx in forbidden if rx.search(rec.text)]
            problems += [f"crosses red line {line!r}" for line in red_lines if line in lowered]
            out.append(self.verdict(rec, not problems, float(len(problems)),
                                    "; ".join(problems) or "every pattern rule holds", ctx))
        return out


class LabelInSet(Filter):
    """Drops candidates whose label is not in the project's label set (or, without one, has no gold)."""

    name = "label_set.v1"
    scope = "record"
    reads = ("label", "[project] labels or the gold labels")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        labels = set(ctx.cfg.project.labels) or {r.label for r in ctx.gold_train}
        return [self.verdict(rec, rec.label in labels, None, "label in the label set" if rec.label in labels
                             else f"label {rec.label!r} is not in the label set", ctx) for rec in candidates]


class Language(Filter):
    """Drops candidates not in [filter] language (langdetect, seeded so verdicts repeat)."""

    name = "language.v1"
    scope = "record"
    reads = ("text", "[filter] language")

    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]:
        try:
            from langdetect import DetectorFactory, detect_langs
            from langdetect.lang_detect_exception import LangDetectException
        except ImportError as exc:
            raise StageError("[filter] language needs langdetect: install goldloop with its `language` "
                             "extra, or clear [filter] language") from exc
        DetectorFactory.seed = 0
        want = ctx.cfg.filter.language
        out = []
        for rec in candidates:
            try:
                best = detect_langs(rec.text)[0]
                lang, prob = best.lang, float(best.prob)
            except LangDetectException:
                lang, prob = "unknown", 0.0
            keep = lang == want
            out.append(self.verdict(rec, keep, prob, f"reads as {lang!r} (p={prob:.2f})" +
                                    ("" if keep else f", not {want!r}"), ctx))
        return out

"""The filter interface and the context filters share."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from ..config import Config
from ..embed import CachedEmbedder
from ..records import Record, Verdict
from ..store import Store


@dataclass
class FilterContext:
    """What a filter may read besides the candidates: the store, the config, gold-train data."""

    store: Store
    cfg: Config
    round: int
    embedder: CachedEmbedder | None = None

    @cached_property
    def gold_train(self) -> list[Record]:
        return self.store.records(origin="gold", split="train")


class Filter(abc.ABC):
    """Judges candidates; returns one :class:`Verdict` per candidate and changes nothing."""

    name: ClassVar[str]                 # versioned, e.g. "length.v1"
    reads: ClassVar[tuple[str, ...]]    # what it looks at, for --explain and the docs

    @abc.abstractmethod
    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]: ...

    def verdict(self, record: Record, keep: bool, score: float | None, reason: str, ctx: FilterContext,
                flag: str = "") -> Verdict:
        return Verdict(record_id=record.id, filter=self.name, keep=keep, score=score, reason=reason,
                       round=ctx.round, flag=flag)

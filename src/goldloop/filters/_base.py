"""The filter interface and the context filters share."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from ..config import Config
from ..errors import StageError
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
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @cached_property
    def gold_train(self) -> list[Record]:
        return self.store.records(origin="gold", split="train")

    def vectors(self, records: list[Record], description: str = "embedding") -> np.ndarray:
        """Embeddings of ``records`` (unit rows), computed once per filter run: several filters
        read the same gold-train and candidate vectors."""
        if self.embedder is None:
            raise StageError("this filter needs an embedder")
        missing = [r for r in records if r.id not in self._vectors]
        if missing:
            self._vectors.update(zip((r.id for r in missing),
                                     self.embedder.embed([r.text for r in missing], description)))
        if not records:
            return np.zeros((0, self.embedder.embedder.dim), dtype=np.float32)
        return np.stack([self._vectors[r.id] for r in records])


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

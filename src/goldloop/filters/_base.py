"""The filter interface and the context filters share."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..config import Config
from ..errors import StageError
from ..embed import CachedEmbedder
from ..records import Provenance, Record, Verdict
from ..store import Store


@dataclass
class FilterContext:
    """What a filter may read besides the candidates: the store, the config, gold-train data."""

    store: Store
    cfg: Config
    round: int
    embedder: CachedEmbedder | None = None
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # What a filter builds once per run and reuses across calls (an index of known texts, a fitted
    # classifier): a worker that judges a round batch by batch builds it once, not per batch.
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def gold_train(self) -> list[Record]:
        return self.store.records(origin="gold", split="train")

    @cached_property
    def known(self) -> list[Record]:
        """Gold-train and earlier rounds' synthetic records, in store order: what a candidate must
        not duplicate (besides the round's earlier candidates)."""
        return [*self.gold_train, *(r for earlier in range(1, self.round)
                                    for r in self.store.records(origin="synthetic", round=earlier))]

    @cached_property
    def heldout(self) -> list[tuple[Record, str]]:
        """Held-out real records and stress-test suite cases, each with how a verdict names it: the
        texts no candidate may copy. Suite cases are stored like held-out text, under ids of their own."""
        out = [(r, f"held-out record {r.id}") for r in self.store.records(origin="gold", split="heldout")]
        for case in self.store.suite_cases():
            if not case.dropped:
                out.append((Record(f"suite-case:{case.id}", case.text, case.label, "gold", "heldout", Provenance()),
                            f"case {case.id[:12]} of stress-test suite {case.suite!r}"))
        return out

    def keep(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per context under ``key``, then the same object."""
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]

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
    # "record": each verdict depends on its candidate alone (and the config, gold-train, what is
    # stored from earlier rounds), so any batch of candidates may be judged anywhere, on its own;
    # "round": a verdict depends on the round's other candidates too. The Ray filter stage
    # (``[executor] backend = "ray"``) judges "record" filters on its workers.
    scope: ClassVar[str] = "round"
    # A "round" filter whose verdicts still depend on each candidate alone, but which runs in this
    # process (it calls an endpoint): the Ray path feeds it the round a page at a time.
    pages: ClassVar[bool] = False

    @abc.abstractmethod
    def judge(self, candidates: list[Record], ctx: FilterContext) -> list[Verdict]: ...

    def verdict(self, record: Record, keep: bool, score: float | None, reason: str, ctx: FilterContext,
                flag: str = "") -> Verdict:
        return Verdict(record_id=record.id, filter=self.name, keep=keep, score=score, reason=reason,
                       round=ctx.round, flag=flag)

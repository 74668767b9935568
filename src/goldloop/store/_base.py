"""The store interface every backend implements (SQLite and PostgreSQL, through the same SQL).

Nothing outside :mod:`goldloop.store` writes SQL: every stage reads and writes through these
methods, and the review server through :class:`ReviewQueueStore` and :class:`AccountStore`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..records import Comparison, Decision, Ranking, Record, Snapshot, Verdict
from ._review_base import AccountStore, ReviewQueueStore

if TYPE_CHECKING:
    from ..trajectory._episode import Episode
    from ..trajectory._filters import EpisodeVerdict
    from ..trajectory._review import EpisodeReview
    from ._suites import SuiteCase, SuiteDecision, SuiteVersion


class IngestRow(NamedTuple):
    batch: str
    source: str
    row: int
    record_id: str | None
    status: str        # added | duplicate
    reason: str


class GenerationRow(NamedTuple):
    request_key: str
    round: int
    strategy: str
    label: str
    prompt: str
    status: str        # ok | failed
    reply: str
    error: str
    attempts: int
    tokens_in: int
    tokens_out: int
    seconds: float
    backend: str = ""
    model: str = ""


class RoundInfo(NamedTuple):
    number: int
    status: str        # open | done
    snapshot_id: str | None
    metrics: dict[str, Any]


class Store(ReviewQueueStore, AccountStore, abc.ABC):
    """Append-only persistence for records, provenance, verdicts, decisions, snapshots and rounds.

    ``add_records`` (and so ``add_generation`` and ``add_decision``) refuses a record whose
    provenance lacks what its origin needs, before anything is written.
    """

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Any]: ...
    @abc.abstractmethod
    def audit(self, kind: str, payload: dict[str, Any], actor: str | None = None) -> None: ...
    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def add_records(self, records: Iterable[Record]) -> int: ...
    @abc.abstractmethod
    def get_record(self, record_id: str) -> Record | None: ...
    @abc.abstractmethod
    def records(self, origin: str | None = None, split: str | None = None, round: int | None = None,
                ids: Iterable[str] | None = None) -> list[Record]: ...
    @abc.abstractmethod
    def iter_records(self, origin: str | None = None, split: str | None = None, round: int | None = None,
                     page: int = 5000) -> Iterator[list[Record]]: ...
    @abc.abstractmethod
    def count_records(self, origin: str | None = None, split: str | None = None, round: int | None = None) -> int: ...
    @abc.abstractmethod
    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]: ...
    @abc.abstractmethod
    def labels(self) -> list[str]: ...
    @abc.abstractmethod
    def text_hashes(self, origin: str | None = None, split: str | None = None) -> dict[str, str]: ...
    @abc.abstractmethod
    def response_hashes(self, origin: str | None = None, split: str | None = None) -> dict[str, str]: ...
    @abc.abstractmethod
    def drafts(self, round: int, origins: tuple[str, ...] = ("synthetic",)) -> list[tuple[str, str, tuple[str, ...]]]:
        """(id, label, gold seeds) of the round's records of these origins, by id."""
    @abc.abstractmethod
    def latest_synthetic_round(self) -> int | None: ...

    @abc.abstractmethod
    def add_ingest_rows(self, rows: Iterable[IngestRow]) -> None: ...
    @abc.abstractmethod
    def ingest_rows(self, batch: str | None = None) -> list[IngestRow]: ...

    @abc.abstractmethod
    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None: ...
    @abc.abstractmethod
    def verdict_marks(self, round: int, record_ids: Sequence[str] | None = None) -> list[tuple[str, str, bool, str]]: ...
    @abc.abstractmethod
    def verdict_counts(self, round: int) -> dict[str, int]: ...
    @abc.abstractmethod
    def judged_ids(self, round: int, filter: str) -> set[str]: ...
    @abc.abstractmethod
    def verdicts(self, record_id: str | None = None, round: int | None = None,
                 filter: str | None = None, keep: bool | None = None) -> list[Verdict]: ...

    @abc.abstractmethod
    def add_decision(self, decision: Decision, new_record: Record | None = None) -> int: ...
    @abc.abstractmethod
    def decisions(self, round: int | None = None, record_id: str | None = None,
                  record_ids: Sequence[str] | None = None) -> list[Decision]: ...
    @abc.abstractmethod
    def iter_decided_ids(self, round: int | None = None, page: int = 5000) -> Iterator[list[str]]: ...

    @abc.abstractmethod
    def add_comparison(self, comparison: Comparison) -> int: ...
    @abc.abstractmethod
    def comparisons(self, round: int | None = None) -> list[Comparison]: ...
    @abc.abstractmethod
    def add_ranking(self, ranking: Ranking) -> int: ...
    @abc.abstractmethod
    def rankings(self, round: int | None = None) -> list[Ranking]: ...

    @abc.abstractmethod
    def finished_requests(self, keys: Iterable[str]) -> set[str]: ...
    @abc.abstractmethod
    def add_generation(self, row: GenerationRow, records: Iterable[Record]) -> None: ...
    @abc.abstractmethod
    def add_generations(self, items: Sequence[tuple[GenerationRow, Iterable[Record]]]) -> None: ...
    @abc.abstractmethod
    def generations(self, round: int | None = None, request_key: str | None = None) -> list[GenerationRow]: ...

    @abc.abstractmethod
    def add_snapshot(self, snapshot: Snapshot) -> None: ...
    @abc.abstractmethod
    def get_snapshot(self, snapshot_id: str) -> Snapshot | None: ...
    @abc.abstractmethod
    def snapshots(self) -> list[Snapshot]: ...
    @abc.abstractmethod
    def snapshot_ids_with_prefix(self, prefix: str) -> list[str]: ...
    @abc.abstractmethod
    def snapshots_with(self, record_id: str) -> list[str]: ...

    @abc.abstractmethod
    def add_signoff(self, snapshot_id: str, approver: str, use_case: str, note: str) -> int: ...
    @abc.abstractmethod
    def signoffs(self, snapshot_id: str | None = None) -> list[dict[str, Any]]: ...
    @abc.abstractmethod
    def add_override(self, snapshot_id: str, rule: str, stage: str, approver: str, reason: str) -> int: ...
    @abc.abstractmethod
    def overrides(self, snapshot_id: str | None = None) -> list[dict[str, Any]]: ...
    @abc.abstractmethod
    def add_training(self, snapshot_id: str, trainer: str, model: str, metrics: dict[str, Any]) -> int: ...
    @abc.abstractmethod
    def trainings(self, snapshot_id: str | None = None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def current_round(self) -> RoundInfo | None: ...
    @abc.abstractmethod
    def open_round(self) -> int: ...
    @abc.abstractmethod
    def finish_round(self, number: int, snapshot_id: str | None, metrics: dict[str, Any]) -> None: ...
    @abc.abstractmethod
    def rounds(self) -> list[RoundInfo]: ...

    @abc.abstractmethod
    def log_event(self, kind: str, payload: dict[str, Any]) -> None: ...
    @abc.abstractmethod
    def events(self, kind: str | None = None) -> list[tuple[float, str, dict[str, Any]]]: ...

    @abc.abstractmethod
    def get_embeddings(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]: ...
    @abc.abstractmethod
    def put_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None: ...

    # stress-test suites (goldloop.suites): cases, decisions on them, frozen versions
    @abc.abstractmethod
    def add_suite_cases(self, cases: Iterable[SuiteCase]) -> int: ...
    @abc.abstractmethod
    def suite_cases(self, suite: str | None = None) -> list[SuiteCase]: ...
    @abc.abstractmethod
    def set_suite_case_filters(self, dropped: dict[str, str]) -> None: ...
    @abc.abstractmethod
    def get_suite_case(self, case_id: str) -> SuiteCase | None: ...
    @abc.abstractmethod
    def suite_text_hashes(self) -> dict[str, str]: ...
    @abc.abstractmethod
    def add_suite_decision(self, decision: SuiteDecision) -> int: ...
    @abc.abstractmethod
    def suite_decisions(self, suite: str | None = None) -> list[SuiteDecision]: ...
    @abc.abstractmethod
    def add_suite_version(self, version: SuiteVersion, actor: str | None = None) -> None: ...
    @abc.abstractmethod
    def suite_versions(self, suite: str | None = None) -> list[SuiteVersion]: ...

    # the trajectory task (goldloop.trajectory): episodes, verdicts on drafted ones, reviews
    @abc.abstractmethod
    def add_episodes(self, episodes: Iterable[Episode]) -> int: ...
    @abc.abstractmethod
    def episodes(self, origin: str | None = None, split: str | None = None, round: int | None = None,
                 ids: list[str] | None = None) -> list[Episode]: ...
    @abc.abstractmethod
    def add_episode_verdicts(self, verdicts: Iterable[EpisodeVerdict], round: int) -> None: ...
    @abc.abstractmethod
    def episode_verdicts(self, round: int | None = None) -> list[EpisodeVerdict]: ...
    @abc.abstractmethod
    def add_episode_review(self, review: EpisodeReview, round: int) -> int: ...
    @abc.abstractmethod
    def episode_reviews(self, round: int | None = None) -> dict[str, EpisodeReview]: ...

"""The review server's part of the store interface: the queue of items with leases, the log of
reviewers' operations (idempotent retries, the undo stack), and user accounts with sessions.

The rules (what may be decided, how an edit is made, who may do what) live in
:mod:`goldloop.serve`; these methods only read and write, each in the caller's transaction
when there is one, so a rule and its writes commit together.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Slot:
    """One reviewer's place on one queued item (a candidate, or an A-vs-B pair)."""

    id: int
    round: int
    item_key: str               # the record id, or "A_ID+B_ID" for a pair
    kind: str                   # single | pair
    record_id: str
    other_id: str | None
    done: bool
    reviewer: str               # the lease holder, then the reviewer who decided
    lease_until: float


class QueueEntry(NamedTuple):
    """A slot to add to the queue."""

    round: int
    item_key: str
    slot: int
    kind: str
    record_id: str
    other_id: str | None
    priority: int               # 0: label-doubt, 1: other candidates, 2: pairs


@dataclass(frozen=True)
class ReviewOp:
    """One write a reviewer made through the server, with the answer it got."""

    id: int
    reviewer: str
    kind: str                   # decision | comparison | undo | bulk | ranking
    round: int
    queue_id: int | None
    decision_id: int | None
    comparison_id: int | None
    result: dict[str, Any]


class UserRow(NamedTuple):
    name: str
    role: str
    active: bool
    created_at: float


class SessionRow(NamedTuple):
    user_name: str
    role: str
    csrf_token: str
    expires_at: float


class ReviewQueueStore(abc.ABC):
    """The review queue and the operations log."""

    @abc.abstractmethod
    def queued_item_keys(self, round: int) -> set[str]: ...
    @abc.abstractmethod
    def enqueue(self, entries: Sequence[QueueEntry]) -> int:
        """Add slots not queued yet; returns how many were added."""
    @abc.abstractmethod
    def close_items(self, item_keys: Iterable[str], reviewer: str | None = None) -> int:
        """Mark the open slots of these items decided (by ``reviewer`` when given)."""
    @abc.abstractmethod
    def claim_slots(self, reviewer: str, round: int, want: int, lease_seconds: float,
                    overlap: int) -> tuple[list[Slot], list[Slot]]:
        """Renew ``reviewer``'s leases in ``round`` and top them up to ``want``: (held before, claimed now)."""
    @abc.abstractmethod
    def queue_slot(self, queue_id: int) -> Slot | None: ...
    @abc.abstractmethod
    def held_slot(self, reviewer: str, queue_id: int) -> Slot | None:
        """The open slot ``queue_id`` if ``reviewer`` holds it."""
    @abc.abstractmethod
    def finish_slot(self, queue_id: int, reviewer: str) -> None: ...
    @abc.abstractmethod
    def reopen_slot(self, queue_id: int, reviewer: str, lease_until: float) -> None: ...
    @abc.abstractmethod
    def release_slots(self, reviewer: str, queue_ids: Iterable[int]) -> int: ...
    @abc.abstractmethod
    def queue_counts(self, round: int, reviewer: str) -> dict[str, int]:
        """Open and decided slots of the round, and how many standing decisions ``reviewer`` made in it."""
    @abc.abstractmethod
    def open_single_records(self, round: int) -> list[str]:
        """Ids of the round's single candidates with an open slot."""
    @abc.abstractmethod
    def review_op(self, client_id: str) -> ReviewOp | None: ...
    @abc.abstractmethod
    def add_review_op(self, client_id: str, reviewer: str, kind: str, round: int, result: dict[str, Any],
                      queue_id: int | None = None, decision_id: int | None = None,
                      comparison_id: int | None = None) -> None: ...
    @abc.abstractmethod
    def last_undoable_op(self, reviewer: str) -> ReviewOp | None:
        """``reviewer``'s newest decision or comparison not undone yet."""
    @abc.abstractmethod
    def mark_op_undone(self, op_id: int) -> None: ...


class AccountStore(abc.ABC):
    """Users of the review server and their login sessions (only hashes of secrets are stored)."""

    @abc.abstractmethod
    def put_user(self, name: str, role: str, password_hash: str) -> None:
        """Add or update an active user; their open sessions end (audited, never the hash)."""
    @abc.abstractmethod
    def users(self) -> list[UserRow]: ...
    @abc.abstractmethod
    def deactivate_user(self, name: str) -> bool:
        """Stop a user and end their sessions; False when there is no such user."""
    @abc.abstractmethod
    def user_credentials(self, name: str) -> tuple[str, str] | None:
        """(role, password hash) of an active user."""
    @abc.abstractmethod
    def set_password_hash(self, name: str, password_hash: str) -> None: ...
    @abc.abstractmethod
    def add_session(self, token_hash: str, user_name: str, csrf_token: str, created_at: float,
                    expires_at: float) -> None:
        """Store a session (expired ones are purged at the same time)."""
    @abc.abstractmethod
    def find_session(self, token_hash: str) -> SessionRow | None:
        """The session of a token hash whose user is active (expired or not: the caller checks)."""
    @abc.abstractmethod
    def delete_session(self, token_hash: str) -> None: ...

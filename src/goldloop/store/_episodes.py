"""The trajectory task's tables: episodes, the filters' verdicts on them, reviewers' answers (all audited)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import StoreError
from ..records import now
from ..trajectory._episode import Episode, Step
from ..trajectory._filters import EpisodeVerdict
from ..trajectory._review import EpisodeReview
from ._audit import AuditLog
from ._connection import marks, where

_COLUMNS = ("id, env_id, seed, origin, split, round, strategy, parents, policy, params, source, total_return, length,"
            " steps, created_at")


class EpisodeTables(AuditLog):
    """Episodes of the ``trajectory`` task in a SQL store."""

    def add_episodes(self, episodes: Iterable[Episode]) -> int:
        """Store new episodes (one already stored is left as it is); how many were new. A held-out
        episode and a training one can never be the same episode: the second is refused."""
        rows = list(episodes)
        added: list[list[str]] = []
        with self.transaction() as db:
            known = {r[0]: r[1] for start in range(0, len(rows), 500)
                     for r in db.execute(f"SELECT id, split FROM episodes WHERE id IN ({marks(len(rows[start:start + 500]))})",
                                         [e.id for e in rows[start:start + 500]]).fetchall()}
            for e in rows:
                if e.id in known:
                    if known[e.id] != e.split and e.origin == "gold":
                        raise StoreError(f"episode {e.id} ({e.source or e.env_id}) is stored as {known[e.id]}; the same "
                                         f"log cannot also be {e.split}. Nothing was written")
                    continue
                known[e.id] = e.split
                db.execute(f"INSERT INTO episodes ({_COLUMNS}) VALUES ({marks(15)})",
                           (e.id, e.env_id, e.seed, e.origin, e.split, e.round, e.strategy, json.dumps(list(e.parents)),
                            e.policy, json.dumps(e.params, sort_keys=True), e.source, e.total_return, e.length,
                            json.dumps([s.to_json() for s in e.steps], separators=(",", ":")),
                            e.created_at or now()))
                added.append([e.id])
            if added:
                self.audit("episodes", {"episodes": len(added), "rows": self._digests(db, "episodes", added)})
        return len(added)

    def episodes(self, origin: str | None = None, split: str | None = None, round: int | None = None,
                 ids: list[str] | None = None) -> list[Episode]:
        """Stored episodes, oldest first (``ids``: those, in that order)."""
        clause, args = where(origin=origin, split=split, round=round)
        if ids is None:
            return [_episode(r) for r in self.query(f"SELECT {_COLUMNS} FROM episodes {clause} ORDER BY {self.rowid}",
                                                    args)]
        found: dict[str, Episode] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            sql = f"{clause} AND id IN ({marks(len(chunk))})" if clause else f"WHERE id IN ({marks(len(chunk))})"
            found.update((e.id, e) for e in map(_episode, self.query(f"SELECT {_COLUMNS} FROM episodes {sql}",
                                                                     [*args, *chunk])))
        return [found[i] for i in ids if i in found]

    def add_episode_verdicts(self, verdicts: Iterable[EpisodeVerdict], round: int) -> None:
        rows = [(v.episode_id, v.filter, round, int(v.keep), v.score, v.reason) for v in verdicts]
        if not rows:
            return
        with self.transaction() as db:
            db.executemany("INSERT INTO episode_verdicts (episode_id, filter, round, keep, score, reason)"
                           " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (episode_id, filter, round) DO NOTHING", rows)
            self.audit("episode.verdicts", {"round": round, "verdicts": len(rows),
                                            "rows": self._digests(db, "episode_verdicts", [r[:3] for r in rows])})

    def episode_verdicts(self, round: int | None = None) -> list[EpisodeVerdict]:
        clause, args = where(round=round)
        return [EpisodeVerdict(r[0], r[1], bool(r[2]), r[3], r[4])
                for r in self.query(f"SELECT episode_id, filter, keep, score, reason FROM episode_verdicts {clause}"
                                    " ORDER BY episode_id, filter", args)]

    def add_episode_review(self, review: EpisodeReview, round: int) -> int:
        with self.transaction() as db:
            new_id = self._insert_id(
                db, "INSERT INTO episode_reviews (episode_id, action, step, new_action, reviewer, simulated, round,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (review.episode_id, review.action, review.step, review.new_action, review.reviewer,
                 int(review.simulated), round, now()))
            self.audit("episode.review", {"episode": review.episode_id, "action": review.action,
                                          "simulated": review.simulated,
                                          "rows": self._digests(db, "episode_reviews", [[new_id]])},
                       actor=review.reviewer)
            return new_id

    def episode_reviews(self, round: int | None = None) -> dict[str, EpisodeReview]:
        """The standing review of each episode (the latest; an 'undo' withdraws the one before)."""
        clause, args = where(round=round)
        out: dict[str, list[EpisodeReview]] = {}
        for r in self.query("SELECT episode_id, action, step, new_action, reviewer, simulated FROM episode_reviews"
                            f" {clause} ORDER BY id", args):
            stack = out.setdefault(r[0], [])
            if r[1] == "undo":
                if stack:
                    stack.pop()
                continue
            stack.append(EpisodeReview(r[0], r[1], r[4], r[2], r[3], bool(r[5])))
        return {k: v[-1] for k, v in out.items() if v}


def _episode(r: Any) -> Episode:
    steps = tuple(Step(s["observation"], s["action"], s["reward"], s["terminated"], s["truncated"], s.get("text", ""))
                  for s in json.loads(r[13]))
    stored = Episode(r[1], r[2], steps, origin=r[3], split=r[4], source=r[10], strategy=r[6],
                     parents=tuple(json.loads(r[7])), policy=r[8], params=json.loads(r[9]), round=r[5],
                     created_at=r[14])
    if stored.id != r[0]:
        raise StoreError(f"episode {r[0]}: its steps no longer hash to its id (the row was changed in the database); "
                         "goldloop audit verify says where")
    return stored

"""Many reviewers at once through the HTTP API of a real `goldloop serve`: no item served to two
reviewers (outside the configured overlap), no decision lost, none stored twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from goldloop.records import Provenance, Record
from goldloop.serve import agreement

from .serve_support import PASSWORD, free_port

REVIEWERS = 16


def _queue_candidates(store, count: int, round: int = 1) -> None:
    """``count`` distinct synthetic candidates in ``round``, seeded by the gold set."""
    store.open_round()
    gold = store.records(origin="gold", split="train")
    records = []
    for i in range(count):
        seed = gold[i % len(gold)]
        records.append(Record.synthetic(f"{seed.text} variant {i}", seed.label, Provenance(
            parents=(seed.id,), strategy="paraphrase.v1", backend="fake", model="fake", params={"temperature": 1.0},
            template_hash="t" * 16, request_key=f"load-{i}", round=round, created_at=time.time())))
    store.add_records(records)


def _start_server(path: Path, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("goldloop")
    proc = subprocess.Popen([str(exe), "-p", str(path), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("goldloop serve exited: " + proc.stdout.read().decode(errors="replace"))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/me", timeout=1).status_code == 401:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("goldloop serve did not answer within 60 s")


async def _reviewer(base: str, name: str, budget: Counter, limit: int, served: dict, stored: list,
                    retries: Counter, released: set) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post("/api/login", json={"name": name, "password": PASSWORD})
        r.raise_for_status()
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        held: list[dict] = []
        n = 0
        while True:
            if not held:
                r = await client.post("/api/next", json={"want": 8, "have": []})
                r.raise_for_status()
                held = r.json()["items"]
                for item in held:
                    served[item["queue_id"]].append(name)
                if not held:
                    return
            item = held.pop(0)
            if budget["decisions"] >= limit:
                # Done: give the held items back; from now on they may go to someone else.
                ids = [item["queue_id"]] + [i["queue_id"] for i in held]
                released.update(ids)
                (await client.post("/api/release", json={"queue_ids": ids})).raise_for_status()
                return
            budget["decisions"] += 1
            n += 1
            action = ("accept", "reject", "skip", "accept", "edit")[n % 5]
            body = {"client_id": uuid.uuid4().hex, "queue_id": item["queue_id"], "action": action}
            if action == "edit":
                body["text"] = item["records"][0]["text"] + f" corrected by {name}"
            r = await client.post("/api/decide", json=body)
            r.raise_for_status()
            first = r.json()
            if n % 40 == 0:                             # a retry of the same write: same answer, stored once
                again = await client.post("/api/decide", json=body)
                again.raise_for_status()
                assert again.json() == first
                retries[name] += 1
            stored.append((name, item["records"][0]["id"], action, first["decision_id"]))


async def _run(base: str, names: list[str], limit: int) -> tuple[dict, list, Counter, set]:
    served: dict[int, list[str]] = defaultdict(list)
    released: set[int] = set()
    stored: list = []
    retries: Counter = Counter()
    budget: Counter = Counter()
    await asyncio.gather(*(_reviewer(base, n, budget, limit, served, stored, retries, released) for n in names))
    return served, stored, retries, released


@pytest.mark.slow
def _review_through_a_server(path: Path, names: list[str], limit: int) -> tuple[dict, list, Counter, set]:
    """Start `goldloop serve` for the project, let ``names`` make ``limit`` decisions, stop it."""
    port = free_port()
    proc = _start_server(path, port)
    try:
        return asyncio.run(_run(f"http://127.0.0.1:{port}", names, limit))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_16_reviewers_10000_decisions(team_project):
    from goldloop.serve import add_user

    path, cfg, store = team_project
    _queue_candidates(store, 10_400)
    names = [f"rev{i:02d}" for i in range(REVIEWERS)]
    for name in names:
        add_user(store, name, "reviewer", PASSWORD)
    served, stored, retries, released = _review_through_a_server(path, names, 10_000)

    assert len(stored) == 10_000
    assert sum(retries.values()) >= 200
    # No item served to two reviewers, unless the first gave it back unseen at the end.
    twice = {qid: who for qid, who in served.items() if len(set(who)) > 1 and qid not in released}
    assert not twice
    assert len(released) < 16 * 8
    # Every decision stored exactly once, with its reviewer and action.
    decisions = [d for d in store.decisions(round=1) if d.action != "undo"]
    assert len(decisions) == 10_000
    assert len({d.id for d in decisions}) == 10_000
    by_id = {d.id: d for d in decisions}
    for name, record_id, action, decision_id in stored:
        d = by_id[decision_id]
        assert (d.reviewer, d.record_id, d.action) == (name, record_id, action)
    assert len({d.record_id for d in decisions}) == 10_000          # each candidate decided once
    edits = [d for d in decisions if d.action == "edit"]
    assert edits and all(store.get_record(d.new_record_id).provenance.parents == (d.record_id,) for d in edits[:50])


def test_overlap_serves_each_item_to_that_many_different_reviewers(team_project):
    from goldloop.serve import add_user

    path, cfg, store = team_project
    cfg.serve.overlap = 2
    cfg.save(path)
    _queue_candidates(store, 60)
    names = ["ann", "bob", "cat", "dan"]
    for name in names:
        add_user(store, name, "reviewer", PASSWORD)
    served, stored, _, _ = _review_through_a_server(path, names, 120)
    assert len(stored) == 120
    per_record: dict[str, list[str]] = defaultdict(list)
    for name, record_id, _, _ in stored:
        per_record[record_id].append(name)
    assert len(per_record) == 60
    assert all(len(who) == 2 and len(set(who)) == 2 for who in per_record.values())
    pairs = agreement(store, 1)
    assert pairs and sum(p["items"] for p in pairs) > 0
    assert all(-1.0 <= (p["kappa"] if p["kappa"] is not None else 0.0) <= 1.0 for p in pairs)

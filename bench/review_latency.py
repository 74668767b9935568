"""Review server latency: next-item API p50/p99 with 1,000,000 queued candidates and 16 concurrent
reviewers, and in Chromium the time from a key press to the next item painted.

    python bench/review_latency.py [--candidates 1000000] [--reviewers 16] [--per-reviewer 200] [--presses 300]

Targets: next-item p99 < 50 ms; key press to paint p99 < 100 ms. The baseline in the same run is
the next-item query on an unindexed copy of the queue (what a scan costs). Needs the `serve` and
`test` extras and Debian's chromium (scripts/setup --test). Ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from goldloop.config import Config
from goldloop.records import Record, content_hash, text_hash
from goldloop.serve import add_user
from goldloop.store import open_store

PASSWORD = "bench passphrase 1"
LABELS = ("billing", "outage", "account")
NEXT_SQL = ("SELECT id FROM {table} WHERE round = ? AND done = 0 AND lease_until < ? ORDER BY priority, id LIMIT 1")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def build_project(root: Path, candidates: int) -> float:
    """A project with gold seeds and ``candidates`` queued synthetic candidates; returns seconds."""
    cfg = Config.from_dict({"project": {"name": "bench", "labels": list(LABELS)}, "llm": {"backend": "fake"},
                            "embed": {"backend": "fake"}})
    cfg.save(root)
    store = open_store(root)
    gold = [Record.gold(f"gold example {i} about {label} with several words", label, source=f"bench:{i}")
            for i, label in enumerate(LABELS * 5)]
    store.add_records(gold)
    number = store.open_round()
    started = time.perf_counter()
    at = time.time()
    batch = 50_000
    for start in range(0, candidates, batch):
        recs, provs, queue = [], [], []
        for i in range(start, min(start + batch, candidates)):
            seed = gold[i % len(gold)]
            text = f"my {seed.label} request number {i} needs a look from support please"
            rid = content_hash("synthetic", text, seed.label, [seed.id], f"bench-{i}")
            recs.append((rid, text, text_hash(text), seed.label, "synthetic", None, number, at))
            provs.append((rid, json.dumps([seed.id]), "paraphrase.v1", "fake", "fake", "{}", "t" * 16,
                          f"bench-{i}", number, "", "", at))
            queue.append((number, rid, 0, "single", rid, None, 0 if i % 50 == 0 else 1))
        with store.transaction() as db:
            db.executemany("INSERT INTO records (id, text, text_hash, label, origin, split, round, created_at)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", recs)
            db.executemany("INSERT INTO provenance (record_id, parents, strategy, backend, model, params, template_hash,"
                           " request_key, round, source, reviewer, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           provs)
            db.executemany("INSERT INTO review_queue (round, item_key, slot, kind, record_id, other_id, priority)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)", queue)
    seconds = time.perf_counter() - started
    for i in range(32):
        add_user(store, f"rev{i:02d}", "reviewer", PASSWORD)
    store.close()
    return seconds


def unindexed_baseline(db_path: Path, repeats: int = 20) -> float:
    """Median ms of the next-item query on a copy of the queue without its index."""
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE IF EXISTS queue_noindex")
    conn.execute("CREATE TABLE queue_noindex AS SELECT * FROM review_queue")
    # Make the head busy as it is under load: the first 200 open slots are leased.
    conn.execute("UPDATE queue_noindex SET lease_until = 1e12 WHERE id IN (SELECT id FROM queue_noindex"
                 " WHERE done = 0 ORDER BY priority, id LIMIT 200)")
    conn.commit()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        conn.execute(NEXT_SQL.format(table="queue_noindex"), (1, time.time())).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    conn.execute("DROP TABLE queue_noindex")
    conn.commit()
    conn.close()
    return statistics.median(times)


def in_process_next(root: Path, calls: int = 500) -> list[float]:
    """ms of claim + item view for one reviewer, straight on the store (what HTTP adds is the rest)."""
    from goldloop.serve._queue import claim, item_view

    store = open_store(root)
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        slots = claim(store, "rev30", 1, 1, [], 300.0, 1)
        item_view(store, slots[0])
        out.append((time.perf_counter() - t) * 1000)
        store.release_slots("rev30", [slots[0].id])
    store.close()
    return out


def start_server(root: Path, port: int) -> tuple[subprocess.Popen, float]:
    exe = Path(sys.executable).with_name("goldloop")
    started = time.perf_counter()
    proc = subprocess.Popen([str(exe), "-p", str(root), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        if proc.poll() is not None:
            raise SystemExit("goldloop serve exited: " + proc.stderr.read().decode(errors="replace"))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/me", timeout=1).status_code == 401:
                return proc, time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.2)


async def reviewers(base: str, count: int, per_reviewer: int) -> tuple[list[float], list[float]]:
    """``count`` reviewers, each looping next-item (want 1) + accept; next-item and decide latencies in ms."""
    next_ms: list[float] = []
    decide_ms: list[float] = []

    async def one(name: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            r = await client.post("/api/login", json={"name": name, "password": PASSWORD})
            r.raise_for_status()
            client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
            for _ in range(per_reviewer):
                t = time.perf_counter()
                r = await client.post("/api/next", json={"want": 1, "have": []})
                next_ms.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                item = r.json()["items"][0]
                t = time.perf_counter()
                r = await client.post("/api/decide", json={"client_id": uuid.uuid4().hex, "queue_id": item["queue_id"],
                                                           "action": "accept"})
                decide_ms.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()

    await asyncio.gather(*(one(f"rev{i:02d}") for i in range(count)))
    return next_ms, decide_ms


def keypress_to_paint(base: str, presses: int, screenshot: Path) -> list[float]:
    from playwright.sync_api import sync_playwright

    out: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.wait_for_selector("#login-name", state="visible")
        page.keyboard.type("rev31")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_selector("#item[data-queue-id]:not([data-queue-id=''])", state="visible")
        page.wait_for_timeout(500)
        for i in range(presses):
            before = page.evaluate("() => document.body.dataset.paints || '0'")
            page.keyboard.press("ArrowRight" if i % 3 else "ArrowLeft")
            page.wait_for_function("(b) => (document.body.dataset.paints || '0') !== b", arg=before, timeout=10000)
            key_at, painted_at = page.evaluate(
                "() => { const n = document.getElementById('item'); return [Number(n.dataset.keyAt), Number(n.dataset.paintedAt)]; }")
            out.append(painted_at - key_at)
        page.wait_for_function("() => document.getElementById('net').textContent === 'all saved'", timeout=30000)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1_000_000, help="queued candidates")
    parser.add_argument("--reviewers", type=int, default=16, help="concurrent reviewers")
    parser.add_argument("--per-reviewer", type=int, default=200, help="next-item + decide loops per reviewer")
    parser.add_argument("--presses", type=int, default=300, help="key presses timed in Chromium")
    parser.add_argument("--screenshot", type=Path, default=Path("review-page.png"), help="where to save the page")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="goldloop-review-bench-") as tmp:
        root = Path(tmp)
        build_s = build_project(root, args.candidates)
        db_path = root / ".goldloop" / "store.db"
        print(f"queued {args.candidates:,} candidates in {build_s:.1f} s "
              f"({args.candidates / build_s:,.0f} rows/s, executemany)")
        baseline_ms = unindexed_baseline(db_path)
        conn = sqlite3.connect(db_path)
        t = time.perf_counter()
        for _ in range(20):
            conn.execute(NEXT_SQL.format(table="review_queue"), (1, time.time())).fetchall()
        indexed_ms = (time.perf_counter() - t) * 1000 / 20
        conn.close()
        print(f"next-item query alone: indexed {indexed_ms:.3f} ms, unindexed copy {baseline_ms:.1f} ms "
              f"({baseline_ms / max(indexed_ms, 1e-6):,.0f}x)")

        inproc = in_process_next(root)
        print(f"next-item in process (claim + item view, no HTTP): p50 {pct(inproc, 50):.3f} ms, "
              f"p99 {pct(inproc, 99):.3f} ms")
        port = int(os.environ.get("BENCH_PORT", "0")) or _free_port()
        proc, startup_s = start_server(root, port)
        print(f"goldloop serve answered after {startup_s:.1f} s (startup queue sync over {args.candidates:,} candidates)")
        base = f"http://127.0.0.1:{port}"
        try:
            t = time.perf_counter()
            next_ms, decide_ms = asyncio.run(reviewers(base, args.reviewers, args.per_reviewer))
            wall = time.perf_counter() - t
            n50, n99 = pct(next_ms, 50), pct(next_ms, 99)
            print(f"{args.reviewers} reviewers, {len(next_ms)} next-item calls in {wall:.1f} s "
                  f"({len(next_ms) / wall:.0f} decisions/s): next-item p50 {n50:.1f} ms, p99 {n99:.1f} ms "
                  f"(target p99 < 50 ms: {n99 / 50:.2f} of it); decide p50 {pct(decide_ms, 50):.1f} ms, "
                  f"p99 {pct(decide_ms, 99):.1f} ms")
            paint = keypress_to_paint(base, args.presses, args.screenshot.resolve())
            k50, k99 = pct(paint, 50), pct(paint, 99)
            print(f"Chromium, {len(paint)} key presses: key press to next item painted p50 {k50:.1f} ms, "
                  f"p99 {k99:.1f} ms (target p99 < 100 ms: {k99 / 100:.2f} of it)")
            print(f"screenshot of the review page: {args.screenshot.resolve()}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({
        "candidates": args.candidates, "reviewers": args.reviewers, "queue_build_s": round(build_s, 2),
        "server_startup_s": round(startup_s, 2), "next_item_p50_ms": round(n50, 2), "next_item_p99_ms": round(n99, 2),
        "decide_p50_ms": round(pct(decide_ms, 50), 2), "decide_p99_ms": round(pct(decide_ms, 99), 2),
        "next_item_p99_share_of_target": round(n99 / 50, 3), "next_query_indexed_ms": round(indexed_ms, 4),
        "next_query_unindexed_ms": round(baseline_ms, 2),
        "unindexed_over_indexed": round(baseline_ms / max(indexed_ms, 1e-6), 1),
        "keypress_to_paint_p50_ms": round(k50, 2), "keypress_to_paint_p99_ms": round(k99, 2),
        "keypress_to_paint_p99_share_of_target": round(k99 / 100, 3),
        "next_item_in_process_p50_ms": round(pct(inproc, 50), 3), "next_item_in_process_p99_ms": round(pct(inproc, 99), 3),
        "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "screenshot": str(args.screenshot.resolve()),
    }))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()

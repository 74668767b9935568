"""How fast the store commits generation replies, one per transaction against batches
(``[executor] reply_batch``), in the same run: each reply is a generations row and one draft
record with its provenance, committed with its audit entry, as `goldloop generate` commits them.

Figures (the last line printed, as JSON):
- replies_per_s_batch_1: one reply per transaction (the default).
- replies_per_s_batch_N: N replies per transaction, for each ``--batch`` size.
- batch_speedup: the largest batch's rate over batch 1's.
With ``--postgres URL`` (or GOLDLOOP_TEST_POSTGRES_URL), PostgreSQL is measured too (``pg_`` keys).

Usage: python bench/reply_commits.py [--replies 4000] [--batch 64 512] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from goldloop.records import Provenance, Record, now
from goldloop.store import GenerationRow, open_store


def replies(n: int, tag: str) -> list[tuple[GenerationRow, list[Record]]]:
    out = []
    for k in range(n):
        key = f"{tag}-{k}"
        text = f"draft {k} of run {tag}: the invoice was charged twice and the refund never arrived"
        row = GenerationRow(key, 1, "paraphrase.v1", "billing", f"prompt {k}", "ok", text, "", 1, 120, 40, 0.8,
                            "openai", "bench")
        prov = Provenance(parents=("gold",), strategy="paraphrase.v1", backend="openai", model="bench",
                          params={"temperature": 0.9}, template_hash="t", request_key=key, round=1,
                          source="generate", created_at=now())
        out.append((row, [Record.synthetic(text, "billing", prov)]))
    return out


def rate(store, n: int, batch: int) -> float:
    items = replies(n, uuid.uuid4().hex[:8])
    started = time.perf_counter()
    for start in range(0, n, batch):
        store.add_generations(items[start:start + batch])
    return n / (time.perf_counter() - started)


def measure(store, n: int, batches: list[int], prefix: str = "") -> dict[str, float]:
    rate(store, 200, 1)                                  # warm the connection and the page cache
    out = {f"{prefix}replies_per_s_batch_{b}": round(rate(store, n if b > 1 else max(n // 4, 200), b), 1)
           for b in [1, *batches]}
    out[f"{prefix}batch_speedup"] = round(out[f"{prefix}replies_per_s_batch_{max(batches)}"]
                                          / out[f"{prefix}replies_per_s_batch_1"], 2)
    print(f"{prefix or 'sqlite_'}: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", type=int, default=4000)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--postgres", default=os.environ.get("GOLDLOOP_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    figures: dict[str, object] = {"replies": args.replies}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp))
        figures |= measure(store, args.replies, args.batch)
        store.close()
    if args.postgres:
        from goldloop.store import PostgresStore

        store = PostgresStore(args.postgres)
        figures |= measure(store, args.replies, args.batch, "pg_")
        store.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

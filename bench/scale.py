"""The filter stage at scale: a round of ``--records`` drafts through the rule filters, leakage and
exact and near dedup, in one process and on Ray (``[executor] backend = "ray"``), in the same run.

The round is made here, deterministically: drafts of 20-80 words (the length of the embedded
model's drafts) over a Zipf-distributed vocabulary of 20,000 words, with planted drops: 3 % copies
and 3 % one-word edits of earlier drafts, 0.5 % copies of gold-train records, 0.2 % copies and
0.2 % edits of held-out records, 1 % too short, 0.5 % repetition loops, 0.2 % off-label. They are
stored in one SQLite store per run (bulk inserts), copied before any filter runs, so every path
judges the same round. Semantic dedup and label consistency read embeddings and are left out:
embedding a million texts is its own stage (`[executor] embed_actors`), not a filter's cost.

Each path runs in a child process of its own, so its peak RSS is its own: one process for the
local path; for Ray, the goldloop process (the "driver") and each Ray worker, sampled every
0.2 s. Verdicts are compared row by row (record, filter, keep, score, reason, flag) through a
digest of the sorted rows.

Figures (the last line printed, as JSON):
- local_records_per_s, ray_records_per_s: candidates judged per second, commit included.
- local_peak_rss_mb, ray_driver_peak_rss_mb, ray_worker_peak_rss_mb at ``--records``.
- rss_ratio_1m_vs_100k: the Ray driver's peak RSS at ``--records`` over that at ``--small``
  (target <= 1.3; ``local_rss_ratio`` is the same for the local path).
- verdicts_identical: the local and Ray verdicts, row by row, at both sizes.
- with ``--cluster``: a Ray cluster on this machine (Ray's multi-node test cluster), a head with
  no CPU for work and one, then two, worker nodes of one CPU each, each judging
  ``--cluster-records`` drafts: ``parallel_efficiency`` = (time with one worker / time with two) / 2
  for the phases the workers run alone (judging, the shuffle and the dedup verdicts; in these
  runs the goldloop process commits every verdict after them, not meanwhile), and
  ``parallel_efficiency_end_to_end`` for the whole stage.

Usage: python bench/scale.py [--records 1000000] [--small 100000] [--cluster] [--work DIR]
Two cores run it all in roughly an hour at a million records; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from goldloop.config import Config
from goldloop.filters import active_filters, run_filters
from goldloop.records import Provenance, Record, now
from goldloop.store import open_store

LABELS = ("billing", "account", "outage", "shipping")
FILTERS = ("length.v1", "repetition.v1", "patterns.v1", "label_set.v1", "leakage.v1", "exact_dup.v1", "near_dup.v1")


def config(address: str = "") -> Config:
    cfg = Config()
    cfg.project.name, cfg.project.labels = "scale", list(LABELS)
    cfg.filter.forbidden_patterns = [r"\bcredit card number\b"]
    cfg.generate.red_lines = ["guaranteed refund"]
    cfg.executor.address = address
    return cfg


def texts(rng: np.random.Generator, n: int, vocab: list[str]) -> list[str]:
    lengths = rng.integers(20, 81, n)
    ids = np.minimum(rng.zipf(1.2, lengths.sum()), len(vocab)) - 1
    out, at = [], 0
    for k in lengths:
        out.append(" ".join(vocab[i] for i in ids[at:at + k]))
        at += k
    return out


def make_round(store_dir: Path, n: int, seed: int = 0) -> None:
    """Gold, held-out and ``n`` drafts of round 1, with the planted drops of the module docstring."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    vocab = [f"w{i}{'abcdefghij'[i % 10]}" for i in range(20_000)]
    store = open_store(store_dir)
    gold = [Record.gold(t, LABELS[i % 4], source=f"gold.csv line {i + 2}") for i, t in enumerate(texts(rng, 2000, vocab))]
    held = [Record.gold(t, LABELS[i % 4], split="heldout", source=f"held.csv line {i + 2}")
            for i, t in enumerate(texts(rng, 500, vocab))]
    store.add_records([*gold, *held])

    def edit(text: str) -> str:
        words = text.split()
        words[pick.randrange(len(words))] = "edited"
        return " ".join(words)

    made: list[str] = []
    chunk = 50_000
    for start in range(0, n, chunk):
        batch = texts(rng, min(chunk, n - start), vocab)
        for i in range(len(batch)):
            r = pick.random()
            earlier = made[pick.randrange(len(made))] if made else None
            if r < 0.03 and earlier:
                batch[i] = earlier
            elif r < 0.06 and earlier:
                batch[i] = edit(earlier)
            elif r < 0.065:
                batch[i] = pick.choice(gold).text
            elif r < 0.067:
                batch[i] = pick.choice(held).text
            elif r < 0.069:
                batch[i] = edit(pick.choice(held).text)
            elif r < 0.079:
                batch[i] = " ".join(batch[i].split()[:3])
            elif r < 0.084:
                batch[i] = " ".join(["the loop again"] * 12)
            made.append(batch[i]) if pick.random() < 0.2 else None
        recs = []
        for i, t in enumerate(batch):
            k = start + i
            label = "refunds" if pick.random() < 0.002 else LABELS[k % 4]
            recs.append(Record.synthetic(t, label, Provenance(
                parents=("gold",), strategy="paraphrase.v1", backend="fake", model="scale", params={"temperature": 1.0},
                template_hash="scale", request_key=f"scale-{k}", round=1, source="bench/scale.py", created_at=now())))
        store.add_records(recs)
        del recs, batch
    store.close()


def verdict_digest(store_dir: Path) -> tuple[str, int]:
    """A digest of every verdict row, sorted; and the row count (streamed, nothing held)."""
    db = sqlite3.connect(store_dir / ".goldloop" / "store.db")
    digest, rows = hashlib.sha256(), 0
    for row in db.execute("SELECT record_id, filter, keep, score, reason, flag FROM verdicts ORDER BY record_id, filter"):
        digest.update(repr(row).encode())
        rows += 1
    db.close()
    return digest.hexdigest(), rows


class WorkerRSS(threading.Thread):
    """Peak RSS and CPU seconds of every Ray worker process, sampled every 0.2 s; and the whole
    machine's busy CPU seconds over the same time."""

    def __init__(self) -> None:
        import psutil

        super().__init__(daemon=True)
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.done = threading.Event()
        self.start_times = psutil.cpu_times()

    def run(self) -> None:
        import psutil

        while not self.done.wait(0.2):
            for proc in psutil.process_iter(["pid", "name", "cmdline"]):
                try:
                    if proc.info["name"].startswith("ray::") or any("ray::" in c for c in proc.info["cmdline"] or ()):
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), proc.memory_info().rss)
                        t = proc.cpu_times()
                        self.cpu[proc.pid] = t.user + t.system
                except (psutil.Error, TypeError, AttributeError):
                    continue

    def machine_busy(self) -> float:
        """CPU seconds the whole machine spent busy since this sampler was made."""
        import psutil

        end = psutil.cpu_times()
        return sum(getattr(end, f) - getattr(self.start_times, f) for f in ("user", "system", "nice", "irq", "softirq")
                   if hasattr(end, f))


def child(path: str, store_dir: Path, address: str, actors: int, overlap: bool = True) -> None:
    """One path over one stored round, in this process; prints its figures as JSON."""
    cfg = config(address)
    filters = [f for f in active_filters(cfg) if f.name in FILTERS]
    store = open_store(store_dir)
    n = store.count_records(origin="synthetic", round=1)
    started = time.monotonic()
    out: dict[str, object] = {}
    if path == "local":
        run_filters(store, cfg, 1, None, filters)
    else:
        from goldloop.filters._ray import run_on_ray

        cfg.executor.backend = "ray"
        sampler = WorkerRSS()
        sampler.start()
        with tempfile.TemporaryDirectory(dir=store_dir.parent) as work:
            out["phases"] = {k: round(v, 1) for k, v in run_on_ray(store, cfg, 1, None, filters, Path(work),
                                                                     actors=actors, overlap=overlap).items()}
        sampler.done.set()
        sampler.join()
        out["worker_peak_rss_mb"] = round(max(sampler.peak.values(), default=0) / 2**20, 1)
        out["worker_cpu_s"] = round(sum(sampler.cpu.values()), 1)          # Ray worker processes, all of them
        out["machine_busy_cpu_s"] = round(sampler.machine_busy(), 1)
        out["driver_cpu_s"] = round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1)
    seconds = time.monotonic() - started
    store.close()
    out |= {"records": n, "seconds": round(seconds, 1), "records_per_s": round(n / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print(json.dumps(out), flush=True)


def run_child(path: str, store_dir: Path, address: str = "", actors: int = 0, overlap: bool = True) -> dict:
    cmd = [sys.executable, __file__, "--child", path, "--store", str(store_dir), "--address", address,
           "--actors", str(actors), *([] if overlap else ["--no-overlap"])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{path} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def size_run(n: int, work: Path) -> dict:
    """Both paths over one round of ``n`` drafts."""
    base = work / f"round-{n}"
    shutil.rmtree(base, ignore_errors=True)
    (base / "local").mkdir(parents=True)
    started = time.monotonic()
    make_round(base / "local", n)
    made = time.monotonic() - started
    shutil.copytree(base / "local", base / "ray")
    local = run_child("local", base / "local")
    ray = run_child("ray", base / "ray")
    same = verdict_digest(base / "local") == verdict_digest(base / "ray")
    print(f"{n:,} drafts (stored in {made:.0f} s): local {local['records_per_s']:,.0f}/s, peak RSS "
          f"{local['peak_rss_mb']:.0f} MB; Ray {ray['records_per_s']:,.0f}/s, driver {ray['peak_rss_mb']:.0f} MB, "
          f"workers up to {ray['worker_peak_rss_mb']:.0f} MB, phases {ray['phases']}; verdicts identical: {same}",
          flush=True)
    shutil.rmtree(base, ignore_errors=True)
    return {"local": local, "ray": ray, "identical": same}


def cluster_run(n: int, work: Path) -> dict:
    """Judging phase and whole stage with one, then two, one-CPU worker nodes of a local cluster:
    Ray's own multi-node test cluster (``ray.cluster_utils.Cluster``), each node a raylet of its
    own on this machine, the head given no CPU for work."""
    from ray.cluster_utils import Cluster

    base = work / f"cluster-{n}"
    shutil.rmtree(base, ignore_errors=True)
    (base / "round").mkdir(parents=True)
    make_round(base / "round", n)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    times = {}
    try:
        for workers in (1, 2):
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            shutil.copytree(base / "round", base / f"w{workers}")
            # commits wait until every shard is judged, so the judging phase times the workers alone
            times[workers] = run_child("ray", base / f"w{workers}", address=cluster.address, actors=workers,
                                       overlap=False)
            print(f"cluster, {workers} worker node(s) of one CPU: {times[workers]['records_per_s']:,.0f} drafts/s, "
                  f"phases {times[workers]['phases']}", flush=True)
    finally:
        cluster.shutdown()
    def workers(run: dict) -> float:
        return run["phases"]["judge"] + run["phases"].get("within", 0.0) + run["phases"].get("dedup", 0.0)

    judge = (workers(times[1]) / workers(times[2])) / 2
    whole = (times[1]["seconds"] / times[2]["seconds"]) / 2
    same = verdict_digest(base / "w1") == verdict_digest(base / "w2")
    shutil.rmtree(base, ignore_errors=True)
    return {"parallel_efficiency": round(judge, 3), "parallel_efficiency_end_to_end": round(whole, 3),
            "cluster_records": n, "cluster_runs": times, "cluster_verdicts_identical": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--cluster", action="store_true", help="Also measure parallel efficiency on a local cluster.")
    parser.add_argument("--cluster-records", type=int, default=1_000_000)
    parser.add_argument("--cluster-only", action="store_true", help="Only the cluster measurement.")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--address", default="", help=argparse.SUPPRESS)
    parser.add_argument("--actors", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.store, args.address, args.actors, not args.no_overlap)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-scale-"))
    started = time.monotonic()
    if args.cluster_only:
        print(json.dumps(cluster_run(args.cluster_records, work) | {"wall_seconds": round(time.monotonic() - started, 1)}))
        return
    small = size_run(args.small, work)
    big = size_run(args.records, work)
    figures = {"records": args.records, "small": args.small,
               "local_records_per_s": big["local"]["records_per_s"], "ray_records_per_s": big["ray"]["records_per_s"],
               "local_peak_rss_mb": big["local"]["peak_rss_mb"], "ray_driver_peak_rss_mb": big["ray"]["peak_rss_mb"],
               "ray_worker_peak_rss_mb": big["ray"]["worker_peak_rss_mb"],
               "rss_ratio_1m_vs_100k": round(big["ray"]["peak_rss_mb"] / small["ray"]["peak_rss_mb"], 3),
               "local_rss_ratio": round(big["local"]["peak_rss_mb"] / small["local"]["peak_rss_mb"], 3),
               "ray_phases": big["ray"]["phases"], "verdicts_identical": small["identical"] and big["identical"],
               "cpus": os.cpu_count()}
    if args.cluster:
        figures |= cluster_run(args.cluster_records, work)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

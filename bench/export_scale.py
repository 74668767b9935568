"""Exports at scale: a snapshot of ``--records`` drafts written as a training set, a page at a time,
against the same export holding the whole snapshot at once (the baseline), in the same run.

The round comes from ``bench/scale.py``'s generator (drafts of 20-80 words, 2,000 gold-train
records); half the drafts are accepted by a reviewer (decisions in the store), and a snapshot of
gold + every draft but the planted copies of held-out records (which the export refuses) is stored
as it is, without the filter stage, so the export reads about ``--records`` rows. Each export runs in a child process of its own, so its peak RSS (``ru_maxrss``) is its own:

- paged: the export as it ships (``goldloop.export._rows.PAGE`` rows at a time);
- whole: the same code with one page as big as the snapshot, which holds every row at once
  (what an export held before it was paged).

Both run at ``--small`` and ``--records`` drafts. The rows written are compared through a digest
of the data file.

Figures (the last line printed, as JSON): ``export_rss_ratio_large_vs_small`` (paged, target
<= 1.3), ``export_whole_rss_ratio_large_vs_small`` (the baseline), ``export_rss_paged_vs_whole``
at ``--records``, ``export_rows_per_s`` and ``export_whole_rows_per_s``, ``rows_identical``.

Usage: python bench/export_scale.py [--records 200000] [--small 20000] [--storage parquet] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import config, make_round  # noqa: E402

from goldloop.records import Decision, Snapshot, content_hash, now, text_hash  # noqa: E402
from goldloop.store import open_store  # noqa: E402


def build(project: Path, n: int) -> str:
    """A project with ``n`` drafts, half of them accepted, and a snapshot of gold + every draft."""
    project.mkdir(parents=True)
    config().save(project)
    make_round(project, n)
    store = open_store(project)
    store.open_round()
    ids: list[str] = [r.id for r in store.records(origin="gold", split="train")]
    heldout = {text_hash(r.text) for r in store.records(origin="gold", split="heldout")}
    drafts = 0
    for page in store.iter_records(origin="synthetic", round=1):
        page = [r for r in page if text_hash(r.text) not in heldout]      # what the leakage filter drops
        with store.transaction():
            for i, rec in enumerate(page):
                if i % 2 == 0:
                    store.add_decision(Decision(rec.id, "accept", "ann", 1))
        ids += [r.id for r in page]
        drafts += len(page)
    ids.sort()
    manifest = {"format": "goldloop.snapshot.v2", "round": 1, "records": len(ids), "by_round": {"1": drafts},
                "by_label": {}, "synthetic_share": round(drafts / len(ids), 4)}
    snap = Snapshot(id=content_hash("snapshot", ids)[:16], name="round-1", round=1, record_ids=tuple(ids),
                    manifest=manifest, created_at=now())
    store.add_snapshot(snap)
    store.close()
    return snap.id


def child(args: argparse.Namespace) -> None:
    import goldloop.export._rows as rows_module
    from goldloop.export import export_snapshot

    store = open_store(args.project)
    snap = store.get_snapshot(args.snapshot)
    assert snap is not None
    if args.whole:
        rows_module.PAGE = len(snap.record_ids)
    started = time.monotonic()
    result = export_snapshot(store, snap, args.format, args.out, storage=args.storage)
    seconds = time.monotonic() - started
    digest = hashlib.sha256()
    for name in sorted(result.files):
        digest.update(result.files[name].encode())
    print(json.dumps({"rows": result.rows, "seconds": round(seconds, 2), "digest": digest.hexdigest(),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def run_child(project: Path, snapshot: str, out: Path, args: argparse.Namespace, whole: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "--project", str(project), "--snapshot", snapshot,
           "--out", str(out), "--format", args.format, "--storage", args.storage] + (["--whole"] if whole else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"export child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--format", default="classification", choices=("classification", "openai", "sft", "kto"))
    parser.add_argument("--storage", default="parquet", choices=("jsonl", "parquet", "hf"))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-export-scale-"))
    figures: dict[str, dict[str, dict]] = {}
    for size in (args.small, args.records):
        started = time.monotonic()
        project = work / f"project-{size}"
        snapshot = build(project, size)
        print(f"{size:,} drafts: project built in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        figures[str(size)] = {}
        for whole in (False, True):
            name = "whole" if whole else "paged"
            fig = run_child(project, snapshot, work / f"export-{size}-{name}", args, whole)
            figures[str(size)][name] = fig
            print(f"  {name}: {fig['rows']:,} rows in {fig['seconds']} s, peak RSS {fig['peak_rss_mb']} MB",
                  file=sys.stderr, flush=True)
    small, large = figures[str(args.small)], figures[str(args.records)]
    result = {
        "records": args.records, "small": args.small, "format": args.format, "storage": args.storage,
        "export_rss_ratio_large_vs_small": round(large["paged"]["peak_rss_mb"] / small["paged"]["peak_rss_mb"], 3),
        "export_whole_rss_ratio_large_vs_small": round(large["whole"]["peak_rss_mb"] / small["whole"]["peak_rss_mb"], 3),
        "export_rss_paged_vs_whole": round(large["paged"]["peak_rss_mb"] / large["whole"]["peak_rss_mb"], 3),
        "export_peak_rss_mb": large["paged"]["peak_rss_mb"], "export_whole_peak_rss_mb": large["whole"]["peak_rss_mb"],
        "export_rows_per_s": round(large["paged"]["rows"] / large["paged"]["seconds"], 1),
        "export_whole_rows_per_s": round(large["whole"]["rows"] / large["whole"]["seconds"], 1),
        "rows_identical": all(f["paged"]["digest"] == f["whole"]["digest"] for f in (small, large))
        if args.storage == "jsonl" else None,
        "rows": {k: {n: v["rows"] for n, v in f.items()} for k, f in figures.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

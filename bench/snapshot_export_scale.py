"""A round's training set at scale: the snapshot built and then exported a page at a time, against
the same code with one page as big as the round (the baseline: every row held at once, as both
stages did before they were paged), at two sizes, in the same run.

The round comes from ``bench/scale.py``'s generator (drafts of 20-80 words, 2,000 gold-train
records), without the planted copies of held-out records (which the snapshot's policy and the
export refuse) and without the filter stage: a reviewer accepted every second draft, and with
``[review] unreviewed_may_train = false`` the rest get the review gate's verdict. So the snapshot
holds gold and half the drafts, and writes a gate verdict for the other half.

Each stage runs in a child process of its own, so its peak RSS (``ru_maxrss``) is its own:

- snapshot: ``build_snapshot`` (drafts read a page at a time, the manifest and the policy rules'
  counts summed as they go, the gate's verdicts written in batches); the baseline runs on a copy
  of the project made before any snapshot. Snapshot ids and manifests are compared.
- export: the policy check at the export stage and ``export_snapshot`` (classification rows,
  ``--storage``), as ``goldloop export`` runs them. The written files are compared (JSON Lines).

Figures (the last line printed, as JSON): ``snapshot_rss_ratio_large_vs_small`` and
``export_rss_ratio_large_vs_small`` (paged; target <= 1.3), the same for the baseline
(``..._whole_...``), paged over whole peak RSS at ``--records``, rows/s of each, and
``snapshots_identical`` / ``rows_identical``.

Usage: python bench/snapshot_export_scale.py [--records 1000000] [--small 100000] [--storage jsonl] [--work DIR]
A million drafts take about half an hour on two cores; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import config, make_round  # noqa: E402

from goldloop.records import Decision, text_hash  # noqa: E402
from goldloop.store import open_store  # noqa: E402


def build(project: Path, n: int) -> None:
    """A project with ``n`` drafts in round 1, every second one accepted by a reviewer (never a
    copy of a held-out record: those stay unreviewed and the gate leaves them out)."""
    project.mkdir(parents=True)
    cfg = config()
    cfg.review.unreviewed_may_train = False
    cfg.policy.max_synthetic_share = 1.0
    cfg.save(project)
    make_round(project, n)
    store = open_store(project)
    store.open_round()
    heldout = {text_hash(r.text) for r in store.records(origin="gold", split="heldout")}
    for page in store.iter_records(origin="synthetic", round=1):
        with store.transaction():
            for i, rec in enumerate(page):
                if i % 2 == 0 and text_hash(rec.text) not in heldout:
                    store.add_decision(Decision(rec.id, "accept", "ann", 1))
    store.close()


def child(args: argparse.Namespace) -> None:
    import goldloop.export._rows as export_rows
    import goldloop.governance as governance
    import goldloop.snapshot as snapshot_module
    from goldloop.config import Config
    from goldloop.export import export_snapshot

    if args.whole:
        snapshot_module.PAGE = governance.PAGE = export_rows.PAGE = 10 ** 9
    store = open_store(args.project)
    cfg = Config.load(args.project)
    started = time.monotonic()
    if args.stage == "snapshot":
        snap = snapshot_module.build_snapshot(store, cfg, 1)
        seconds = time.monotonic() - started
        manifest = {k: v for k, v in snap.manifest.items() if k != "created_at"}
        out = {"rows": len(snap.record_ids), "id": snap.id,
               "digest": hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest(),
               "gate_verdicts": sum(1 for v in store.verdicts(round=1, filter=snapshot_module.GATE))}
    else:
        (snap,) = store.snapshots()
        governance.enforce(store, cfg, snap, "export")
        result = export_snapshot(store, snap, "classification", args.out, storage=args.storage)
        seconds = time.monotonic() - started
        digest = hashlib.sha256()
        for name in sorted(result.files):
            digest.update(result.files[name].encode())
        out = {"rows": result.rows, "digest": digest.hexdigest()}
    out["seconds"] = round(seconds, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def run_child(stage: str, project: Path, out: Path, args: argparse.Namespace, whole: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--project", str(project), "--out", str(out),
           "--storage", args.storage] + (["--whole"] if whole else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{stage} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--storage", default="jsonl", choices=("jsonl", "parquet", "hf"))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", choices=("snapshot", "export"), help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.stage = args.child
        child(args)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="goldloop-snapshot-export-scale-"))
    figures: dict[str, dict[str, dict]] = {}
    for size in (args.small, args.records):
        started = time.monotonic()
        paged, whole = work / f"project-{size}", work / f"project-{size}-whole"
        build(paged, size)
        shutil.copytree(paged, whole)
        print(f"{size:,} drafts: projects built in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        fig: dict[str, dict] = {}
        for stage in ("snapshot", "export"):
            for name, project in (("paged", paged), ("whole", whole)):
                got = run_child(stage, project, work / f"export-{size}-{name}", args, name == "whole")
                fig[f"{stage}_{name}"] = got
                print(f"  {stage} {name}: {got['rows']:,} rows in {got['seconds']} s, peak RSS {got['peak_rss_mb']} MB",
                      file=sys.stderr, flush=True)
        figures[str(size)] = fig
        shutil.rmtree(whole)
    small, large = figures[str(args.small)], figures[str(args.records)]
    result: dict[str, object] = {"records": args.records, "small": args.small, "storage": args.storage}
    for stage in ("snapshot", "export"):
        p, w = f"{stage}_paged", f"{stage}_whole"
        result[f"{stage}_rss_ratio_large_vs_small"] = ratio(large[p]["peak_rss_mb"], small[p]["peak_rss_mb"])
        result[f"{stage}_whole_rss_ratio_large_vs_small"] = ratio(large[w]["peak_rss_mb"], small[w]["peak_rss_mb"])
        result[f"{stage}_rss_paged_vs_whole"] = ratio(large[p]["peak_rss_mb"], large[w]["peak_rss_mb"])
        result[f"{stage}_peak_rss_mb"] = large[p]["peak_rss_mb"]
        result[f"{stage}_whole_peak_rss_mb"] = large[w]["peak_rss_mb"]
        result[f"{stage}_rows_per_s"] = round(large[p]["rows"] / large[p]["seconds"], 1)
        result[f"{stage}_whole_rows_per_s"] = round(large[w]["rows"] / large[w]["seconds"], 1)
    result["snapshots_identical"] = all(f["snapshot_paged"]["id"] == f["snapshot_whole"]["id"]
                                        and f["snapshot_paged"]["digest"] == f["snapshot_whole"]["digest"]
                                        and f["snapshot_paged"]["gate_verdicts"] == f["snapshot_whole"]["gate_verdicts"]
                                        for f in figures.values())
    result["rows_identical"] = (all(f["export_paged"]["digest"] == f["export_whole"]["digest"] for f in figures.values())
                                if args.storage == "jsonl" else None)
    result["rows"] = {k: {n: v["rows"] for n, v in f.items()} for k, f in figures.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

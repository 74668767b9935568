"""Do reviewed synthetic episodes make a behaviour-cloning policy better on real logs? The
`trajectory` task on Gymnasium's Taxi (routing pick-ups and drop-offs).

The "real logs" are episodes of a SIMULATED operator (``goldloop.trajectory.operator_logs``):
best actions by the environment's own optimal values, with ``--slip`` random moves, as a person
who knows the routes but is not perfect. No public log of real dispatchers ships offline; the
figures say how the loop behaves on logs of that kind, not on any real fleet.

For each seed: ``--gold`` gold-train episodes and ``--heldout`` held-out episodes (never replayed,
never a start, never trained on), from disjoint start seeds. A policy (random forest over the
state's features) is trained on gold alone. Then ``--rounds`` rounds: the current policy drafts
``--per-strategy`` episodes with each strategy (perturbation of a gold episode, rollout from a
fresh start, and a start where the policy disagrees with a gold log), with ``--epsilon``
exploration among allowed actions; the filters drop red-line steps, copies, near copies and
anything near a held-out log; a SIMULATED reviewer (marked ``simulated:route-oracle``) accepts
an episode whose every action is best, or flags the first step that is not and writes in the
best action; the policy is retrained on gold + every reviewed row so far.

Scored, gold-only against the last round's policy, in the same run:
- agreement: share of each held-out episode's logged actions the policy takes (the operator's
  random moves cap it below 1);
- return: mean return of a greedy episode from each of ``--starts`` fresh starts (no training or
  held-out episode began there), with Taxi's 200-step limit;
- violations: red-line steps (illegal pickup or drop-off) per simulator episode.

Paired bootstrap intervals: over held-out episodes for agreement, over starts for return. The
last line is one JSON object with ``seeds``, ``agreement_lift_mean``, ``return_lift_mean``,
``violations_gold_only``, ``violations_after`` and the per-seed figures.

Usage: python bench/efficacy_trajectory.py [--seeds 5] [--gold 6] [--rounds 3]   (about 10 s a seed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter

from goldloop.trajectory import (BCPolicy, Bounds, DraftPlan, OracleReviewer, Simulator, draft_episodes,
                                 filter_episodes, kept, operator_logs, paired_interval, preference_pairs,
                                 rows_of, score, starts_avoiding, training_rows)


def run_seed(seed: int, sim: Simulator, q, args: argparse.Namespace) -> dict[str, object]:
    base = seed * 1_000_000
    gold = operator_logs(sim, q, list(range(base, base + args.gold)), slip=args.slip, seed=seed)
    held = operator_logs(sim, q, list(range(base + 100_000, base + 100_000 + args.heldout)), slip=args.slip,
                         seed=seed + 7919, split="heldout")
    starts = starts_avoiding(args.starts, {e.seed for e in gold + held}, first=base + 500_000)
    full = operator_logs(sim, q, list(range(base + 200_000, base + 200_000 + args.full)), slip=args.slip,
                         seed=seed + 104729) if args.full else []
    policy = BCPolicy(sim, seed).fit(rows_of(gold))
    before = score(policy, sim, held, starts)
    reviewer = OracleReviewer(q)
    rows, pairs, rounds = [], [], []
    for number in range(1, args.rounds + 1):
        plan = DraftPlan(per_strategy=args.per_strategy, epsilon=args.epsilon)
        drafts = draft_episodes(sim, gold + held, policy, policy.name, plan, number, seed=seed * 100 + number)
        verdicts = filter_episodes(sim, drafts, gold + held, Bounds())
        passed = kept(drafts, verdicts)
        reviews = [reviewer.review(e) for e in passed]
        for ep, review in zip(passed, reviews):
            rows += training_rows(ep, review)
            pairs += preference_pairs(ep, review)
        policy = BCPolicy(sim, seed).fit(rows_of(gold) + rows)
        now = score(policy, sim, held, starts).summary()
        rounds.append({"round": number, "drafted": len(drafts), "passed_filters": len(passed),
                       "dropped_by": dict(Counter(v.filter for v in verdicts if not v.keep)),
                       "reviews": dict(Counter(r.action for r in reviews)), "rows": len(rows), **now})
        print(f"seed {seed} round {number}: {len(drafts)} drafted, {len(passed)} passed the filters, "
              f"reviews {dict(Counter(r.action for r in reviews))}; {now}", file=sys.stderr, flush=True)
    after = score(policy, sim, held, starts)
    ceiling = score(BCPolicy(sim, seed).fit(rows_of(gold + full)), sim, held, starts).summary() if full else None
    agreement = paired_interval(before.agreement, after.agreement, seed)
    returns = paired_interval(before.returns, after.returns, seed)
    return {"seed": seed, "gold_steps": sum(e.length for e in gold), "gold_only": before.summary(),
            "after": after.summary(), "all_real": ceiling, "rounds": rounds, "reviewed_rows": len(rows),
            "dpo_pairs": len(pairs),
            "agreement_lift": [round(x, 4) for x in agreement], "return_lift": [round(x, 3) for x in returns]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--env", default="Taxi-v4")
    parser.add_argument("--gold", type=int, default=6, help="Gold-train episodes (real logs) per seed.")
    parser.add_argument("--heldout", type=int, default=50, help="Held-out episodes per seed.")
    parser.add_argument("--full", type=int, default=100, help="Further real episodes for the 'all real' row (0: none).")
    parser.add_argument("--starts", type=int, default=100, help="Fresh simulator starts the return is measured on.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-strategy", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--slip", type=float, default=0.15, help="The simulated operator's share of random moves.")
    args = parser.parse_args()
    started = time.monotonic()
    sim = Simulator(args.env)
    q = sim.adapter.optimal_values()
    runs = [run_seed(seed, sim, q, args) for seed in range(args.seeds)]
    print(f"\n{args.env}: {args.seeds} seeds, {args.gold} gold episodes (simulated operator logs, {args.slip:.0%} "
          f"random moves), {args.heldout} held-out, {args.rounds} rounds of {3 * args.per_strategy} drafts reviewed "
          "by a SIMULATED reviewer")
    print(f"{'seed':>4} {'agreement':>22} {'return':>22} {'violations/episode':>20}")
    for r in runs:
        g, a = r["gold_only"], r["after"]                                                 # type: ignore[index]
        print(f"{r['seed']:>4} {g['agreement']:>10.4f} -> {a['agreement']:<9.4f} {g['return']:>10.2f} -> "
              f"{a['return']:<9.2f} {g['violations_per_episode']:>8.2f} -> {a['violations_per_episode']:<8.2f}")
    lifts = [r["agreement_lift"][0] for r in runs]                                       # type: ignore[index]
    ret = [r["return_lift"][0] for r in runs]                                            # type: ignore[index]
    wall = round(time.monotonic() - started, 1)
    print(f"agreement lift per seed: {', '.join(f'{x:+.4f}' for x in lifts)}; return lift: "
          f"{', '.join(f'{x:+.1f}' for x in ret)}; wall time {wall} s")
    print(json.dumps({
        "seeds": args.seeds, "env": args.env, "gold_episodes": args.gold, "heldout_episodes": args.heldout,
        "rounds": args.rounds, "reviewer": "simulated:route-oracle",
        "agreement_gold_only_mean": round(statistics.mean(r["gold_only"]["agreement"] for r in runs), 4),   # type: ignore[index]
        "agreement_after_mean": round(statistics.mean(r["after"]["agreement"] for r in runs), 4),           # type: ignore[index]
        "agreement_lift_mean": round(statistics.mean(lifts), 4),
        "agreement_seeds_with_lift": sum(x > 0 for x in lifts),
        "agreement_all_real_mean": round(statistics.mean(r["all_real"]["agreement"] for r in runs), 4)      # type: ignore[index]
        if args.full else None,
        "return_gold_only_mean": round(statistics.mean(r["gold_only"]["return"] for r in runs), 3),         # type: ignore[index]
        "return_after_mean": round(statistics.mean(r["after"]["return"] for r in runs), 3),                 # type: ignore[index]
        "return_lift_mean": round(statistics.mean(ret), 3),
        "return_seeds_with_lift": sum(x > 0 for x in ret),
        "violations_gold_only": round(statistics.mean(r["gold_only"]["violations_per_episode"] for r in runs), 4),  # type: ignore[index]
        "violations_after": round(statistics.mean(r["after"]["violations_per_episode"] for r in runs), 4),  # type: ignore[index]
        "wall_seconds": wall, "runs": runs}))


if __name__ == "__main__":
    main()

"""The trajectory task's core: episodes and their located errors, replay, drafting that never starts
from held-out logs, the filters, reviews that become training rows and DPO pairs, and the policy."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

pytest.importorskip("gymnasium")

from goldloop.trajectory import (BCPolicy, Bounds, DraftPlan, Episode, EpisodeError, EpisodeReview,  # noqa: E402
                                 OracleReviewer, Simulator, SimulatorError, draft_episodes, filter_episodes,
                                 kept, operator_logs, preference_pairs, read_episodes, rows_of, score,
                                 starts_avoiding, training_rows)


@pytest.fixture(scope="module")
def taxi():
    sim = Simulator("Taxi-v4")
    q = sim.adapter.optimal_values()
    gold = operator_logs(sim, q, list(range(0, 6)), seed=0)
    held = operator_logs(sim, q, list(range(100, 110)), seed=1, split="heldout")
    return sim, q, gold, held


def test_an_episode_is_content_addressed_and_replays(taxi) -> None:
    sim, _, gold, _ = taxi
    ep = gold[0]
    assert ep.id == Episode(ep.env_id, ep.seed, ep.steps).id and ep.real
    assert ep.id != replace(ep, seed=ep.seed + 1).id
    steps, _, ended = sim.replay(ep.seed, ep.actions, expect=ep.steps)
    assert ended and tuple(steps) == ep.steps
    assert ep.total_return == sum(s.reward for s in ep.steps) and ep.length == len(ep.steps)
    with pytest.raises(SimulatorError, match="does not replay here"):
        sim.replay(ep.seed + 1, ep.actions, expect=ep.steps)
    assert "destination" in sim.render(ep.steps[0].observation)


def test_logs_are_read_per_step_or_per_episode(taxi, tmp_path) -> None:
    sim, _, gold, _ = taxi
    per_step = tmp_path / "steps.jsonl"
    per_step.write_text("".join(json.dumps({"episode": f"e{n}", "t": t, "env_id": "Taxi-v4", "seed": ep.seed,
                                            **s.to_json()}) + "\n"
                                for n, ep in enumerate(gold[:2]) for t, s in reversed(list(enumerate(ep.steps)))))
    read = read_episodes(per_step, action_count=6)
    assert [e.id for e in read] == [e.id for e in gold[:2]]
    per_episode = tmp_path / "episodes.jsonl"
    per_episode.write_text("".join(json.dumps({"seed": ep.seed, "steps": [s.to_json() for s in ep.steps]}) + "\n"
                                   for ep in gold[:2]))
    assert [e.id for e in read_episodes(per_episode, env_id="Taxi-v4", split="heldout")] == [e.id for e in gold[:2]]
    assert all(e.split == "heldout" for e in read_episodes(per_episode, env_id="Taxi-v4", split="heldout"))


def test_malformed_steps_are_located_and_nothing_is_read(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    rows = [{"episode": "a", "t": 0, "observation": 1, "action": 9, "reward": -1},
            {"episode": "a", "t": 1, "observation": 2, "action": 0},
            {"episode": "b", "t": 0, "observation": 1, "action": 0, "reward": -1},
            {"episode": "b", "t": 2, "observation": 1, "action": 0, "reward": -1},
            {"episode": "c", "t": 0, "observation": 1, "action": 0, "reward": -1, "terminated": True},
            {"episode": "c", "t": 1, "observation": 1, "action": 0, "reward": -1},
            {"t": 0, "observation": 1, "action": 0, "reward": -1}]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EpisodeError) as caught:
        read_episodes(bad, env_id="Taxi-v4", action_count=6)
    text = str(caught.value)
    assert "bad.jsonl line 1: 'action' must be an integer in 0..5, not 9" in text
    assert "bad.jsonl line 2: no 'reward'" in text
    assert "bad.jsonl line 4: episode 'b' jumps from t=0 to t=2" in text
    assert "episode 'c'" in text and "step 0 ends the episode" in text
    assert "bad.jsonl line 7: no 'episode'" in text and "nothing was read" in text


def test_heldout_episodes_never_seed_a_rollout(taxi) -> None:
    sim, _, gold, held = taxi
    policy = BCPolicy(sim).fit(rows_of(gold))
    # a fresh start would land on a held-out seed: the held-out logs start at 100..109
    plan = DraftPlan(per_strategy=15, epsilon=0.2, fresh_seeds_from=100)
    drafts = draft_episodes(sim, gold + held, policy, policy.name, plan, 1, seed=3)
    held_ids, held_seeds = {e.id for e in held}, {e.seed for e in held}
    assert drafts and all(e.origin == "synthetic" and e.round == 1 for e in drafts)
    assert not any(set(e.parents) & held_ids for e in drafts)
    assert not any(e.seed in held_seeds for e in drafts)
    assert {e.strategy for e in drafts} <= {"perturb.v1", "rollout.v1", "targeted.v1"}
    perturbed = [e for e in drafts if e.strategy == "perturb.v1"]
    parent = {g.id: g for g in gold}[perturbed[0].parents[0]]
    k = perturbed[0].params["takeover_step"]
    assert perturbed[0].actions[:k] == parent.actions[:k]                  # replayed, then taken over
    # the same inputs give the same drafts
    assert [e.id for e in draft_episodes(sim, gold + held, policy, policy.name, plan, 1, seed=3)] == [e.id for e in drafts]


def test_the_red_line_filter_drops_a_planted_violating_episode(taxi) -> None:
    sim, _, gold, held = taxi
    good = replace(gold[0], origin="synthetic", split=None, strategy="perturb.v1")
    first = gold[1].steps[0]
    steps, _, _ = sim.replay(gold[1].seed, (4,) + gold[1].actions[:3])    # a pickup with no passenger at the taxi
    assert steps[0].reward == -10
    planted = Episode(sim.env_id, gold[1].seed, tuple(steps), origin="synthetic", split=None)
    copy = replace(held[0], origin="synthetic", split=None)
    verdicts = filter_episodes(sim, [good, planted, copy], gold + held)
    by = {(v.episode_id, v.filter): v for v in verdicts}
    red = by[(planted.id, "red_lines.v1")]
    assert not red.keep and red.reason.startswith("step 0 breaks red line taxi.illegal_pickup")
    assert by[(good.id, "exact_dup.v1")].reason.startswith("same start and actions as episode")
    assert not by[(copy.id, "leakage.v1")].keep and "held-out" in by[(copy.id, "leakage.v1")].reason
    assert kept([good, planted, copy], verdicts) == []
    assert first.observation == steps[0].observation
    short = filter_episodes(sim, [planted], gold, Bounds(min_length=10, red_lines=()))
    assert {v.filter for v in short if not v.keep} == {"length_bounds.v1"}
    with pytest.raises(ValueError, match="unknown red line"):
        filter_episodes(sim, [planted], gold, Bounds(red_lines=("taxi.speeding",)))


def test_a_corrected_action_yields_a_dpo_pair_at_that_state(taxi) -> None:
    sim, q, gold, _ = taxi
    reviewer = OracleReviewer(q)
    obs, _ = sim.env.reset(seed=5)
    best = int(q[int(obs)].argmax())
    wrong = next(a for a in range(4) if a not in reviewer.optimal(obs))
    steps = sim.rollout(lambda o: int(q[int(o)].argmax()), 5, prefix=(wrong,))
    ep = Episode(sim.env_id, 5, tuple(steps), origin="synthetic", split=None)
    review = reviewer.review(ep)
    assert (review.action, review.step, review.new_action, review.simulated) == ("correct", 0, best, True)
    assert review.reviewer.startswith("simulated:")
    (pair,) = preference_pairs(ep, review)
    assert (pair.observation, pair.chosen, pair.rejected, pair.step) == (steps[0].observation, best, wrong, 0)
    rows = training_rows(ep, review)
    assert [(r.observation, r.action) for r in rows] == [(steps[0].observation, best)]
    accepted = EpisodeReview(gold[0].id, "accept", "ann")
    assert len(training_rows(gold[0], accepted)) == gold[0].length and not preference_pairs(gold[0], accepted)
    assert training_rows(gold[0], EpisodeReview(gold[0].id, "reject", "ann")) == []
    with pytest.raises(ValueError, match="names the step"):
        EpisodeReview(ep.id, "correct", "ann")


def test_a_policy_is_scored_on_heldout_logs_and_in_the_simulator(taxi) -> None:
    sim, q, gold, held = taxi
    starts = starts_avoiding(5, {e.seed for e in gold + held}, first=100)
    assert not set(starts) & {e.seed for e in held}
    policy = BCPolicy(sim).fit(rows_of(gold))
    scores = score(policy, sim, held, starts)
    assert len(scores.agreement) == len(held) and len(scores.returns) == len(scores.violations) == 5
    assert 0.0 <= scores.summary()["agreement"] <= 1.0
    expert = BCPolicy(sim).fit([r for e in operator_logs(sim, q, list(range(200, 260)), slip=0.0) for r in rows_of([e])])
    assert score(expert, sim, held, starts).summary()["return"] > scores.summary()["return"] - 1e-9
    with pytest.raises(SimulatorError, match="cannot make environment"):
        Simulator("Taxi-v3")


def test_minari_and_trl_exports_load_with_their_libraries(taxi, tmp_path, monkeypatch) -> None:
    minari = pytest.importorskip("minari")
    datasets = pytest.importorskip("datasets")
    from trl.data_utils import is_conversational

    from goldloop.errors import GoldloopError
    from goldloop.trajectory import export_minari, trl_tool_rows

    sim, _, gold, held = taxi
    folder = export_minari(sim, gold[:3], "goldloop/taxi-v0", tmp_path / "minari")
    assert folder == (tmp_path / "minari" / "goldloop" / "taxi-v0").resolve()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = minari.load_dataset("goldloop/taxi-v0")
    assert ds.total_episodes == 3 and ds.total_steps == sum(e.length for e in gold[:3])
    first = next(ds.iterate_episodes())
    assert list(first.actions) == list(gold[0].actions)
    assert list(first.observations[:-1]) == [s.observation for s in gold[0].steps]
    assert len(first.observations) == gold[0].length + 1 and bool(first.terminations[-1])
    with pytest.raises(GoldloopError, match="held out"):
        export_minari(sim, held[:1], "goldloop/taxi-v1", tmp_path / "minari")
    with pytest.raises(GoldloopError, match="namespace/name-vN"):
        export_minari(sim, gold[:1], "taxi logs", tmp_path / "minari")
    assert not (tmp_path / "minari" / "goldloop" / "taxi-v1").exists()

    rows = trl_tool_rows(sim, gold[:2], system="You dispatch a taxi.")
    path = tmp_path / "trl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(loaded) == 2 and is_conversational(loaded[0])
    msgs = rows[0]["messages"]
    assert [m["role"] for m in msgs[:4]] == ["system", "user", "assistant", "tool"]
    call = msgs[2]["tool_calls"][0]["function"]
    assert call["name"] in {t["function"]["name"] for t in json.loads(rows[0]["tools"])}
    assert msgs[3]["name"] == call["name"] and "reward" in msgs[3]["content"]
    assert sum(m["role"] == "assistant" for m in msgs) == gold[0].length
    with pytest.raises(GoldloopError, match="held out"):
        trl_tool_rows(sim, held[:1])

    # a reviewer's correction as a TRL conversational preference row
    from goldloop.trajectory import OracleReviewer, trl_preference_rows

    _, q, _, _ = taxi
    obs, _ = sim.env.reset(seed=5)
    wrong = next(a for a in range(4) if a not in OracleReviewer(q).optimal(obs))
    ep = Episode(sim.env_id, 5, tuple(sim.rollout(lambda o: int(q[int(o)].argmax()), 5, prefix=(wrong,))),
                 origin="synthetic", split=None)
    (row,) = trl_preference_rows(sim, preference_pairs(ep, OracleReviewer(q).review(ep)))
    assert is_conversational(row) and row["prompt"][-1]["role"] == "user"
    assert row["chosen"][0]["tool_calls"][0]["function"]["name"] == sim.adapter.action_name(int(q[int(obs)].argmax()))
    assert row["rejected"][0]["tool_calls"][0]["function"]["name"] == sim.adapter.action_name(wrong)


def test_episodes_verdicts_and_reviews_are_stored_and_audited(taxi, team_project) -> None:
    """On SQLite and on PostgreSQL: episodes round-trip with their ids, a held-out log cannot also be
    a training one, verdicts and reviews are kept (the latest review stands), and the audit log
    vouches for every row."""
    from goldloop.errors import StoreError

    sim, q, gold, held = taxi
    _, _, store = team_project
    assert store.add_episodes(gold + held) == len(gold) + len(held)
    assert store.add_episodes(gold[:2]) == 0                                     # stored once
    assert [e.id for e in store.episodes(split="heldout")] == [e.id for e in held]
    back = store.episodes(ids=[gold[1].id, gold[0].id])
    assert [e.id for e in back] == [gold[1].id, gold[0].id] and back[0].steps == gold[1].steps
    with pytest.raises(StoreError, match="cannot also be train"):
        store.add_episodes([replace(held[0], split="train")])
    policy = BCPolicy(sim).fit(rows_of(gold))
    drafts = draft_episodes(sim, gold + held, policy, policy.name, DraftPlan(per_strategy=3), 1, seed=1)
    store.add_episodes(drafts)
    # a draft that repeats a gold log step for step is that log (the same id), stored once, as gold
    new = {e.id for e in drafts} - {e.id for e in gold}
    assert new and {e.id for e in store.episodes(origin="synthetic", round=1)} == new
    drafts = [e for e in drafts if e.id in new]
    stored = store.episodes(ids=[drafts[0].id])[0]
    assert (stored.strategy, stored.parents, stored.params, stored.policy) == \
        (drafts[0].strategy, drafts[0].parents, drafts[0].params, drafts[0].policy)
    verdicts = filter_episodes(sim, drafts, gold + held)
    store.add_episode_verdicts(verdicts, 1)
    assert len(store.episode_verdicts(1)) == len(verdicts)
    reviewer = OracleReviewer(q)
    store.add_episode_review(EpisodeReview(drafts[0].id, "reject", "ann"), 1)
    store.add_episode_review(reviewer.review(drafts[0]), 1)
    store.add_episode_review(EpisodeReview(drafts[1].id, "accept", "ann"), 1)
    store.add_episode_review(EpisodeReview(drafts[1].id, "undo", "ann"), 1)
    standing = store.episode_reviews(1)
    assert standing[drafts[0].id] == reviewer.review(drafts[0]) and drafts[1].id not in standing
    assert store.verify_audit().ok


def test_the_trajectory_demo_runs_end_to_end_and_says_what_is_simulated(tmp_path) -> None:
    from click.testing import CliRunner

    from goldloop.cli import main
    from goldloop.store import open_store

    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["-q", "demo", "--task", "trajectory", "--dir", str(out), "--rounds", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "simulated operator log" in text and "a stand-in" in text and "SIMULATED reviewer" in text
    assert "gold only agreement" in text and "kept policy agreement" in text
    report = json.loads((out / "reports" / "trajectory.json").read_text(encoding="utf-8"))
    assert len(report["rounds"]) == 2 and report["reviewer"].startswith("simulated:")
    assert (out / "exports" / "trl-tool-calls.jsonl").is_file()
    assert int(report["exports"]["preference_pairs"]) == len(
        (out / "exports" / "trl-preferences.jsonl").read_text(encoding="utf-8").splitlines()) > 0
    assert (out / "exports" / "minari" / "goldloop" / "taxi-dispatch-v0" / "data").is_dir()
    store = open_store(out)
    held = store.episodes(origin="gold", split="heldout")
    drafts = store.episodes(origin="synthetic")
    assert len(held) == 50 and drafts
    assert not {e.seed for e in drafts} & {e.seed for e in held}
    assert not {p for e in drafts for p in e.parents} & {e.id for e in held}
    reviews = [r for n in (1, 2) for r in store.episode_reviews(n).values()]
    assert reviews and all(r.simulated and r.reviewer.startswith("simulated:") for r in reviews)
    assert store.verify_audit().ok
    store.close()
    refused = CliRunner().invoke(main, ["-p", str(out), "status"])
    assert refused.exit_code == 1 and "trajectory project" in refused.output


def test_an_llm_agent_drafts_through_the_llm_interface(taxi) -> None:
    from goldloop.llm import FakeLLM
    from goldloop.trajectory import LLMAgent

    sim, q, gold, held = taxi

    def best(request) -> str:                 # a scripted model that answers with the best move, in words
        state = request.messages[1]["content"]
        row, col = (int(x) for x in state.split("taxi at row ")[1].split(" (")[0].split(", column "))
        passenger = state.split("; passenger ")[1].split(";")[0]
        destination = state.split("destination ")[1].split("\n")[0].strip()
        places = {"R": 0, "G": 1, "Y": 2, "B": 3}
        obs = sim.env.unwrapped.encode(row, col, 4 if passenger == "in the taxi" else places[passenger[-1]],
                                       places[destination])
        return f"I will go {sim.adapter.action_name(int(q[obs].argmax()))}."

    agent = LLMAgent(sim, FakeLLM(best))
    policy = BCPolicy(sim).fit(rows_of(gold))
    plan = DraftPlan(per_strategy=2, strategies=("llm_agent.v1",), fresh_seeds_from=100)
    drafts = draft_episodes(sim, gold + held, policy, policy.name, plan, 1, seed=4, agent=agent)
    assert len(drafts) == 2 and all(e.strategy == "llm_agent.v1" and e.policy.startswith("llm-agent:fake")
                                    for e in drafts)
    assert all(s.text.startswith("I will go ") for e in drafts for s in e.steps)
    assert all(e.steps[-1].terminated and e.total_return > 0 for e in drafts)      # the best moves deliver
    assert not {e.seed for e in drafts} & {e.seed for e in held}
    request = agent.llm.requests[0]
    assert "Answer with one action name" in request.messages[1]["content"] and "north" in request.messages[0]["content"]
    dropped: list[str] = []
    mute = LLMAgent(sim, FakeLLM(lambda r: "I am not sure."))
    assert draft_episodes(sim, gold + held, policy, policy.name, plan, 1, seed=4, agent=mute, dropped=dropped) == []
    assert len(dropped) == 2 and "names no action" in dropped[0]
    with pytest.raises(Exception, match="needs an agent"):
        draft_episodes(sim, gold + held, policy, policy.name, plan, 1)

"""Pool prompts of the `generate` task: ingested alone with located errors, never a repeat of a
held-out side, picked and answered by the drafting model from the nearest gold pairs, reviewed
(accept: machine text; rewrite: a real row and a DPO pair; reject: not offered again), and
answered by the SIMULATED response oracle in benchmarks and forecasts."""

from __future__ import annotations

import json

import pytest

from goldloop.errors import IngestError, StageError
from goldloop.ingest import ingest_file
from goldloop.llm._fake import FakeLLM
from goldloop.records import CORRECT, SUGGEST, Decision, Record, now, text_hash
from goldloop.review import review_states, suggestions
from goldloop.store import open_store
from goldloop.suggest_pairs import answered_before, suggest_pairs

from .conftest import fake_config, sent_text

GOLD = [(f"Write the docstring of this Python function.\n\ndef add{i}(x):\n    return x + {i}",
         f"Return x plus {i}.") for i in range(8)]
HELD = [(f"Write the docstring of this Python function.\n\ndef secret{i}(y):\n    return y * {i}",
         f"Multiply y by {i} (held out).") for i in range(3)]
POOL = [f"Write the docstring of this Python function.\n\ndef pool{i}(s):\n    return s.strip() * {i}"
        for i in range(10)]


def _write(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(params=["completion", "chat"])
def project(tmp_path, request):
    cfg = fake_config(project={"task": "generate"}, llm={"mode": request.param}, generate={"seeds_per_prompt": 3})
    store = open_store(tmp_path)
    for name, rows, split in (("train.jsonl", GOLD, "train"), ("held.jsonl", HELD, "heldout")):
        _write(tmp_path / name, [{"prompt": p, "response": r} for p, r in rows])
        ingest_file(store, cfg, tmp_path / name, split=split)
    # the pool repeats one held-out prompt and one gold prompt: neither is stored
    _write(tmp_path / "pool.jsonl", [{"prompt": p} for p in POOL] + [{"prompt": HELD[0][0]}, {"prompt": GOLD[0][0]}])
    report = ingest_file(store, cfg, tmp_path / "pool.jsonl", split="pool")
    assert (report.added, report.duplicates) == (len(POOL), 2)
    yield cfg, store, tmp_path
    store.close()


def _reply(request) -> str:
    return "Return s stripped, repeated.\n\nRaises nothing."


def test_pool_prompts_are_ingested_alone_and_never_repeat_a_held_out_or_gold_prompt(project) -> None:
    cfg, store, tmp = project
    pool = store.records(origin="pool", split="pool")
    assert sorted(r.text for r in pool) == sorted(POOL) and not any(r.is_pair for r in pool)
    log = [row for row in store.ingest_rows() if row.status == "duplicate"]
    assert any("held-out data is never shown" in row.reason for row in log)
    assert any("gold/train" in row.reason for row in log)
    # ingesting the same file again adds nothing; an empty prompt is located and nothing is written
    assert ingest_file(store, cfg, tmp / "pool.jsonl", split="pool").already_ingested
    _write(tmp / "bad.jsonl", [{"prompt": "def ok(): pass"}, {"prompt": "   "}])
    with pytest.raises(IngestError) as err:
        ingest_file(store, cfg, tmp / "bad.jsonl", split="pool")
    assert "bad.jsonl line 2" in str(err.value) and "'prompt' is empty" in str(err.value)
    assert len(store.records(origin="pool", split="pool")) == len(POOL)
    # TRL's conversational form: a user turn with no assistant turn after it
    _write(tmp / "chat.jsonl", [{"messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "def chat(): return 1"}]}])
    ingest_file(store, cfg, tmp / "chat.jsonl", split="pool", messages_column="messages")
    chat = [r for r in store.records(origin="pool", split="pool") if r.text == "def chat(): return 1"]
    assert chat and chat[0].system == "Be brief."


def test_suggested_responses_come_from_the_nearest_gold_pairs_and_no_held_out_side(project) -> None:
    cfg, store, _ = project
    llm = FakeLLM(_reply)
    report = suggest_pairs(store, cfg, 1, 4, llm, None)
    assert (report.pool, report.eligible, report.picked, report.drafted, report.failed) == (len(POOL), len(POOL), 4, 4, 0)
    made = [r for r in suggestions(store, 1) if r.is_pair]
    assert len(made) == 4 and all(r.response == "Return s stripped, repeated.\n\nRaises nothing." for r in made)
    pool_ids = {r.id for r in store.records(origin="pool", split="pool")}
    gold_ids = {r.id for r in store.records(origin="gold", split="train")}
    for rec in made:
        p = rec.provenance
        assert p.strategy == SUGGEST and p.parents[0] in pool_ids and set(p.parents[1:]) <= gold_ids
        assert p.request_key and p.model == "fake-echo" and not p.missing_fields("pool")
        assert not rec.real                              # a drafted response is machine text
    sent = "\n".join(sent_text(r) for r in llm.requests)
    assert "secret" not in sent and "held out" not in sent
    assert all(sent_text(r).count("def add") == 3 for r in llm.requests)   # seeds_per_prompt gold pairs each
    # a rerun in the same round picks the same prompts and sends nothing
    again = suggest_pairs(store, cfg, 1, 4, llm, None)
    assert again.already and len(llm.requests) == 4 and len(suggestions(store, 1)) == 4


def test_a_held_out_pair_ingested_later_keeps_its_prompt_out_of_the_pool_picks(project) -> None:
    cfg, store, tmp = project
    _write(tmp / "late.jsonl", [{"prompt": POOL[3], "response": "Held out after the pool came in."}])
    ingest_file(store, cfg, tmp / "late.jsonl", split="heldout")
    report = suggest_pairs(store, cfg, 1, len(POOL), FakeLLM(_reply), None)
    assert report.heldout_excluded == 1 and report.picked == len(POOL) - 1
    assert POOL[3] not in {r.text for r in suggestions(store, 1)}


def test_review_of_suggested_responses_trains_what_it_should(project) -> None:
    from goldloop.review import edit_record
    from goldloop.snapshot import build_snapshot
    from goldloop.training_signals import derive

    cfg, store, _ = project
    suggest_pairs(store, cfg, 1, 3, FakeLLM(_reply), None)
    first, second, third = sorted((r for r in suggestions(store, 1) if r.is_pair), key=lambda r: r.id)
    fixed = edit_record(first, None, None, labels=[], normalize=cfg.ingest.normalize, reviewer="ann", round=1,
                        response="Return s without its outer whitespace, i times over.")
    assert fixed.origin == "pool" and fixed.provenance.strategy == CORRECT and fixed.real and fixed.is_pair
    store.add_decision(Decision(first.id, "edit", "ann", 1, new_record_id=fixed.id, created_at=now()), new_record=fixed)
    store.add_decision(Decision(second.id, "accept", "ann", 1, created_at=now()))
    store.add_decision(Decision(third.id, "reject", "ann", 1, created_at=now()))
    snap = build_snapshot(store, cfg, 1, reviewed_only=True)
    assert fixed.id in snap.record_ids and second.id in snap.record_ids
    assert first.id not in snap.record_ids and third.id not in snap.record_ids
    signals = derive(store, 1)
    assert [(r.chosen, r.rejected) for r in signals.dpo] == [(fixed.response, first.response)]
    assert sorted(r.completion for r in signals.sft) == sorted([fixed.response, second.response])
    # answered prompts (accepted, rewritten, or rejected as unusable) are not offered again
    assert answered_before(store, 2) == {first.provenance.parents[0], second.provenance.parents[0],
                                         third.provenance.parents[0]}
    store.open_round()
    later = suggest_pairs(store, cfg, 2, len(POOL), FakeLLM(_reply), None)
    assert later.answered == 3 and later.picked == len(POOL) - 3


def test_the_simulated_response_oracle_accepts_close_drafts_and_writes_the_rest_in(project) -> None:
    from goldloop.loop_pairs import answer_suggestions
    from goldloop.simulate import ResponseOracle

    cfg, store, _ = project
    suggest_pairs(store, cfg, 1, 2, FakeLLM(_reply), None)
    close, far = sorted((r for r in suggestions(store, 1) if r.is_pair), key=lambda r: r.id)
    oracle = ResponseOracle({text_hash(close.text): close.response + " ",
                             text_hash(far.text): "Strip s and repeat it; an empty string stays empty."}, "known.jsonl")
    counts = answer_suggestions(store, cfg, 1, oracle)
    assert (counts["accept"], counts["edit"]) == (1, 1)
    states = review_states(store.decisions(round=1))
    assert states[close.id].action == "accept" and states[far.id].action == "edit"
    written = store.get_record(states[far.id].new_record_id)
    assert written.response == "Strip s and repeat it; an empty string stays empty." and written.real
    assert all(d.simulated and d.reviewer == "simulated:response-oracle" for d in store.decisions())
    assert oracle.to_json()["simulated"] and oracle.figures["edited_chars"] == len(written.response)
    assert answer_suggestions(store, cfg, 1, oracle)["accept"] == 0        # nothing answered twice


def test_suggest_needs_gold_and_a_pool(tmp_path) -> None:
    cfg = fake_config(project={"task": "generate"})
    store = open_store(tmp_path)
    _write(tmp_path / "train.jsonl", [{"prompt": p, "response": r} for p, r in GOLD])
    ingest_file(store, cfg, tmp_path / "train.jsonl", split="train")
    with pytest.raises(StageError, match="--split pool"):
        suggest_pairs(store, cfg, 1, 2, FakeLLM(_reply), None)
    assert Record.pool_prompt("p").id != Record.pool("p").id
    store.close()


def test_the_review_page_shows_a_suggested_response_without_its_pool_prompt_as_a_seed(project) -> None:
    from goldloop.serve import sync_queue
    from goldloop.serve._queue import item_view

    cfg, store, _ = project
    suggest_pairs(store, cfg, 1, 2, FakeLLM(_reply), None)
    sync_queue(store, cfg, 1)
    _, slots = store.claim_slots("ann", 1, 10, 60.0, 1)
    views = [item_view(store, s) for s in slots]
    shown = [r for v in views for r in v["records"] if r["origin"] == "pool"]
    assert len(shown) == 2
    for r in shown:
        assert r["pair"] and r["response"] and r["suggestion"]["summary"].startswith("response drafted by fake-echo")
        assert r["seeds"] and all(s["response"] for s in r["seeds"])       # gold pairs, not the pool prompt


def test_the_cli_suggests_responses_and_traces_them(tmp_path) -> None:
    from click.testing import CliRunner

    from goldloop.cli import main
    from goldloop.config import Config

    project, runner = tmp_path / "docs", CliRunner()
    assert runner.invoke(main, ["-p", str(project), "init", "--task", "generate"]).exit_code == 0
    cfg = Config.load(project)
    cfg.llm.backend, cfg.embed.backend = "fake", "fake"
    cfg.save(project)
    for name, rows, split in (("train.jsonl", [{"prompt": p, "response": r} for p, r in GOLD], "train"),
                              ("held.jsonl", [{"prompt": p, "response": r} for p, r in HELD], "heldout"),
                              ("pool.jsonl", [{"prompt": p} for p in POOL], "pool")):
        _write(tmp_path / name, rows)
        res = runner.invoke(main, ["-p", str(project), "ingest", str(tmp_path / name), "--split", split])
        assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["-p", str(project), "suggest", "--budget", "3"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "3 of 10 open pool prompts picked, 3 with a drafted response" in said
    said = " ".join(runner.invoke(main, ["-p", str(project), "status"]).output.split())
    assert "10 real prompts awaiting a response; 3 suggested responses" in said
    store = open_store(project)
    made = suggestions(store, 1)[0]
    store.close()
    res = runner.invoke(main, ["-p", str(project), "trace", made.id])
    assert res.exit_code == 0 and "response suggested by fake:fake-echo" in " ".join(res.output.split())

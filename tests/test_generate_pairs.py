"""Training on pairs and judging a generate model on held-out real pairs: reference NLL, greedy
outputs, chrF, ROUGE-L, similarity, the paired bootstrap; and a LoRA SFT step on the packaged
SmolLM2 (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs the `train` extra")
pytest.importorskip("peft", reason="needs the `train` extra")

from goldloop.errors import StageError  # noqa: E402
from goldloop.evaluate_pairs import (chrf, greedy_outputs, load_adapter, paired_bootstrap,  # noqa: E402
                                     prompt_messages, reference_nll, rouge_l, score_pairs, sft_rows,
                                     train_on_pairs)
from goldloop.records import Record  # noqa: E402
from goldloop.train import LoraSettings  # noqa: E402

from .lm_support import build_tiny_llama  # noqa: E402

PAIRS = [("what does the printer do", "it prints pages"), ("what does the router do", "it routes packets"),
         ("what does the kettle do", "it boils water"), ("what does the fridge do", "it keeps food cold")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), [w for p in PAIRS for w in p])


def _records() -> list[Record]:
    return [Record.gold_pair(p, r) for p, r in PAIRS]


def test_rows_and_messages_carry_system_and_context() -> None:
    rec = Record.gold_pair("Summarise it.", "Short.", system="Be terse.", context="The claim was paid.")
    assert prompt_messages(rec) == [{"role": "system", "content": "Be terse."},
                                    {"role": "user", "content": "The claim was paid.\n\nSummarise it."}]
    assert sft_rows([rec])[0]["completion"] == [{"role": "assistant", "content": "Short."}]


def test_text_scores_from_the_libraries() -> None:
    assert chrf(["it prints pages"], ["it prints pages"]) == [100.0]
    assert chrf(["zzz"], ["it prints pages"])[0] < 10
    assert rouge_l(["it prints pages"], ["it prints pages"]) == [1.0]
    assert 0 < rouge_l(["it prints"], ["it prints pages"])[0] < 1
    delta, low, high = paired_bootstrap([1.0, 1.2, 0.9, 1.1], [0.8, 1.0, 0.8, 0.9], seed=1)
    assert delta == pytest.approx(-0.175) and low <= delta <= high < 0


def test_sft_on_pairs_lowers_their_reference_nll(tiny: str, tmp_path: Path) -> None:
    from goldloop.train._causal_lm import load_causal_lm

    records = _records()
    model, tok = load_causal_lm(tiny)
    before = reference_nll(model, tok, records)
    result = train_on_pairs(records, tiny, tmp_path / "adapter", max_steps=30, batch_size=4, learning_rate=3e-2,
                            max_length=64, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    assert result.steps == 30 and (tmp_path / "adapter" / "adapter_config.json").exists()
    tuned, tok = load_adapter(tiny, tmp_path / "adapter")
    after = score_pairs(tuned, tok, records, "tuned", max_new_tokens=6)
    assert sum(after.nll) / 4 < sum(before) / 4 - 0.25                 # nats per response token
    assert abs(sum(after.nll) / 4 - result.losses[-1]) < 0.2           # measured as the trainer measures it
    assert len(after.outputs) == 4 and len(after.chrf) == 4 and all(0 <= x <= 1 for x in after.rouge_l)


def test_batched_greedy_outputs_and_nll_match_one_at_a_time_and_the_ngram_block_holds(tmp_path: Path) -> None:
    """Left-padded batches give each prompt the output it gets alone, right-padded ones the
    reference NLL it gets alone; a 2-gram block leaves no
    2-gram of output tokens repeated."""
    import torch

    torch.manual_seed(0)                # a model whose outputs differ by prompt, so the comparison means something
    base = build_tiny_llama(tmp_path / "model", [w for p in PAIRS for w in p])
    train_on_pairs(_records(), base, tmp_path / "adapter", max_steps=60, batch_size=4, learning_rate=5e-2,
                   max_length=64, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    model, tok = load_adapter(base, tmp_path / "adapter")
    records = _records() + [Record.gold_pair("the printer", "it prints")]     # prompts of different lengths
    alone = greedy_outputs(model, tok, records, 12, batch_size=1)
    assert len(set(alone)) >= 2
    assert greedy_outputs(model, tok, records, 12, batch_size=4) == alone
    alone_nll = reference_nll(model, tok, records, batch_size=1)       # right-padded NLL batches agree too
    assert reference_nll(model, tok, records, batch_size=4) == pytest.approx(alone_nll, abs=1e-4)
    for text in greedy_outputs(model, tok, records, 12, batch_size=4, no_repeat_ngram_size=2):
        ids = tok(text, add_special_tokens=False).input_ids
        grams = list(zip(ids, ids[1:]))
        assert len(grams) == len(set(grams))


def test_gemma_gguf_is_refused_and_a_missing_model_is_named(tmp_path: Path) -> None:
    from goldloop.train._causal_lm import resolve_model

    with pytest.raises(StageError, match="no such GGUF file"):
        resolve_model(str(tmp_path / "nope.gguf"))
    pytest.importorskip("gguf", reason="reading a GGUF's architecture needs the gguf package")
    from goldloop.llm._embedded import default_model_path  # the generator's packaged GGUF
    from goldloop.train._causal_lm import load_causal_lm

    try:
        gemma = default_model_path()
    except Exception as exc:                  # the embedded extra is not installed
        pytest.skip(f"no embedded model: {exc}")

    with pytest.raises(StageError, match="transformers issue 41494"):
        load_causal_lm(str(gemma))


@pytest.mark.slow
def test_a_lora_sft_step_on_the_packaged_smollm2(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="loading a GGUF into transformers needs the gguf package")
    from goldloop.train._causal_lm import load_causal_lm

    records = [Record.gold_pair("Write the docstring of this Python function.\n\ndef add(a, b):\n    return a + b",
                                "Return the sum of a and b."),
               Record.gold_pair("Write the docstring of this Python function.\n\ndef neg(x):\n    return -x",
                                "Return x with its sign flipped.")]
    model, tok = load_causal_lm("smollm2")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok("Hello").input_ids[0] != tok.convert_tokens_to_ids("<|im_start|>")    # no token added to a text
    before = reference_nll(model, tok, records)
    result = train_on_pairs(records, "smollm2", tmp_path / "adapter", max_steps=2, batch_size=2, max_length=128,
                            lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    assert result.steps == 2 and result.device == "cpu"
    tuned, tok = load_adapter("smollm2", tmp_path / "adapter")
    scores = score_pairs(tuned, tok, records[:1], "tuned", max_new_tokens=12)
    assert all(x == x and x > 0 for x in before + scores.nll) and isinstance(scores.outputs[0], str)


def test_an_edited_response_gives_sft_and_dpo_rows_trl_takes(tiny: str, tmp_path: Path) -> None:
    import json

    from goldloop.records import Decision, Provenance, now
    from goldloop.review import edit_record
    from goldloop.store import open_store
    from goldloop.train import train_generator
    from goldloop.training_signals import derive

    store = open_store(tmp_path / "p")
    gold = Record.gold_pair("what does the printer do", "it prints pages", source="t.jsonl line 1")
    prov = Provenance(parents=(gold.id,), strategy="pair_paraphrase.v1", backend="fake", model="fake", params={"t": 1},
                      template_hash="h", request_key="k1", round=1, source="generate")
    drafts = [Record.synthetic_pair("what does the router do", "it boils water", prov),
              Record.synthetic_pair("what does the kettle do", "it boils water",
                                    Provenance(**{**prov.__dict__, "request_key": "k2"}))]
    store.add_records([gold, *drafts])
    fixed = edit_record(drafts[0], None, None, labels=[], normalize="whitespace", reviewer="ann", round=1,
                        response="it routes packets")
    assert fixed.is_pair and fixed.text == drafts[0].text and fixed.response == "it routes packets"
    with pytest.raises(Exception, match="changes nothing"):
        edit_record(drafts[1], None, None, labels=[], normalize="whitespace", reviewer="ann", round=1,
                    response="it boils water")
    store.add_decision(Decision(drafts[0].id, "edit", "ann", 1, new_record_id=fixed.id, created_at=now()),
                       new_record=fixed)
    store.add_decision(Decision(drafts[1].id, "accept", "ann", 1, created_at=now()))
    signals = derive(store, 1)
    sft = {r.prompt: r.completion for r in signals.sft}
    assert sft == {"what does the router do": "it routes packets", "what does the kettle do": "it boils water"}
    assert [(r.prompt, r.chosen, r.rejected) for r in signals.dpo] == [
        ("what does the router do", "it routes packets", "it boils water")]
    assert all(r.prompt_source == "pair" for r in signals.sft + signals.dpo)
    for method, rows in (("sft", [{"prompt": r.prompt, "completion": " " + r.completion} for r in signals.sft]),
                         ("dpo", [{"prompt": r.prompt, "chosen": " " + r.chosen, "rejected": " " + r.rejected}
                                  for r in signals.dpo])):
        path = tmp_path / f"{method}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        result = train_generator(path, method, base_model=tiny, out_dir=tmp_path / f"out-{method}", max_steps=2,
                                 batch_size=1, max_length=32, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
        assert result.steps == 2
    store.close()


def test_a_pair_snapshot_is_judged_against_gold_only_on_held_out_pairs(tiny: str, tmp_path: Path) -> None:
    import json

    from goldloop.config import Config
    from goldloop.evaluate_pairs import evaluate_pair_snapshot
    from goldloop.ingest import ingest_file
    from goldloop.records import Decision, Provenance, now
    from goldloop.snapshot import build_snapshot
    from goldloop.store import open_store

    cfg = Config.from_dict({"project": {"name": "t", "task": "generate"}, "embed": {"backend": "fake"},
                            "trl": {"base_model": tiny, "max_steps": 4, "batch_size": 2, "max_length": 48,
                                    "learning_rate": 0.01, "lora_r": 4, "lora_alpha": 8}})
    store = open_store(tmp_path / "p")
    for name, rows, split in (("train.jsonl", PAIRS[:2], "train"), ("held.jsonl", PAIRS[2:], "heldout")):
        path = tmp_path / name
        path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows), encoding="utf-8")
        ingest_file(store, cfg, path, split=split)
    gold = store.records(origin="gold", split="train")
    prov = Provenance(parents=(gold[0].id,), strategy="pair_paraphrase.v1", backend="fake", model="fake",
                      params={"t": 1}, template_hash="h", request_key="k", round=1, source="generate")
    draft = Record.synthetic_pair("what does the printer do now", "it prints pages", prov)
    store.add_records([draft])
    store.add_decision(Decision(draft.id, "accept", "ann", 1, created_at=now()))
    snap = build_snapshot(store, cfg, 1, reviewed_only=True)
    result = evaluate_pair_snapshot(store, cfg, snap, tmp_path / "adapters", generate=2, max_new_tokens=3)
    assert result.heldout_size == 2 and result.train_sizes == {"gold_only": 2, "with_synthetic": 3}
    assert result.verdict in ("improved", "no clear change", "worse")
    assert result.interval[0] <= result.delta_nll <= result.interval[1]
    assert result.gold_only["nll"] > 0 and result.with_synthetic["chrf"] is not None
    assert json.dumps(result.to_json())
    store.close()


def test_the_cli_takes_a_generate_project_from_ingest_to_evaluation(tiny: str, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from goldloop.cli import main
    from goldloop.config import Config

    runner = CliRunner()
    project = tmp_path / "docs"
    assert runner.invoke(main, ["-p", str(project), "init", "--task", "generate"]).exit_code == 0
    cfg = Config.load(project)
    cfg.llm.backend, cfg.embed.backend = "fake", "fake"
    cfg.generate.per_label, cfg.review.unreviewed_may_train = 2, True
    cfg.trl.base_model, cfg.trl.max_steps, cfg.trl.batch_size, cfg.trl.max_length = tiny, 2, 2, 48
    cfg.save(project)
    rows = [{"q": p, "a": r} for p, r in PAIRS]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for split, part in (("train", rows[:2]), ("heldout", rows[2:])):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        res = runner.invoke(main, ["-p", str(project), "ingest", str(path), "--prompt-column", "q",
                                   "--response-column", "a", "--split", split])
        assert res.exit_code == 0, res.output
        assert "pairs added" in res.output
    res = runner.invoke(main, ["-p", str(project), "status"])
    assert "2 gold pairs to train on, 2 held out" in res.output
    res = runner.invoke(main, ["-p", str(project), "generate"])
    assert res.exit_code == 0 and "6 requests planned" in res.output, res.output
    res = runner.invoke(main, ["-p", str(project), "filter"])
    assert res.exit_code == 0, res.output
    assert "passed" in res.output
    res = runner.invoke(main, ["-p", str(project), "evaluate"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "on 2 held-out real pairs" in said and "reference NLL" in said and "(lower is better)" in said, said
    from goldloop.store import open_store

    store = open_store(project)
    ev = store.rounds()[-1].metrics["evaluation"]
    assert ev["task"] == "generate" and ev["train_sizes"]["with_synthetic"] > ev["train_sizes"]["gold_only"] == 2
    store.close()
    # one command for a whole round: draft, filter, snapshot, train, judge
    res = runner.invoke(main, ["-p", str(project), "round"])
    assert res.exit_code == 0, res.output
    assert "round 2 on 2 held-out real pairs" in " ".join(res.output.split())
    res = runner.invoke(main, ["-p", str(project), "report"])
    assert res.exit_code == 0 and "round 2: reference NLL" in res.output, res.output
    res = runner.invoke(main, ["-p", str(project), "plan"])
    assert res.exit_code != 0 and "classify task only" in " ".join(res.output.split())


def test_a_pair_snapshot_exports_for_trl_and_refuses_classification(tiny: str, tmp_path: Path) -> None:
    from goldloop.errors import StageError
    from goldloop.export import export_snapshot
    from goldloop.records import Decision, Provenance, now
    from goldloop.review import edit_record
    from goldloop.snapshot import build_snapshot
    from goldloop.store import open_store
    from goldloop.train import train_generator

    from .conftest import fake_config

    cfg = fake_config(project={"task": "generate"})
    store = open_store(tmp_path / "p")
    gold = [Record.gold_pair(p, r, source=f"t.jsonl line {i}") for i, (p, r) in enumerate(PAIRS, start=1)]
    store.add_records(gold)
    prov = Provenance(parents=(gold[0].id,), strategy="pair_paraphrase.v1", backend="fake", model="fake",
                      params={"t": 1}, template_hash="h", request_key="k", round=1, source="generate")
    draft = Record.synthetic_pair("what does the lamp do", "it heats rooms", prov)
    store.add_records([draft])
    fixed = edit_record(draft, None, None, labels=[], normalize="whitespace", reviewer="ann", round=1,
                        response="it lights rooms")
    store.add_decision(Decision(draft.id, "edit", "ann", 1, new_record_id=fixed.id, created_at=now()), new_record=fixed)
    snap = build_snapshot(store, cfg, 1)
    sft = export_snapshot(store, snap, "sft", tmp_path / "sft")
    rows = [json.loads(line) for line in next((tmp_path / "sft").glob("train-*.jsonl")).read_text().splitlines()]
    assert {(r["prompt"], r["completion"]) for r in rows} == set(PAIRS) | {("what does the lamp do", "it lights rooms")}
    export_snapshot(store, snap, "dpo", tmp_path / "dpo")
    dpo = [json.loads(line) for line in next((tmp_path / "dpo").glob("train-*.jsonl")).read_text().splitlines()]
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in dpo] == [
        ("what does the lamp do", "it lights rooms", "it heats rooms")]
    with pytest.raises(StageError, match="for labelled texts"):
        export_snapshot(store, snap, "classification", tmp_path / "cls")
    result = train_generator(tmp_path / "sft", "sft", base_model=tiny, out_dir=tmp_path / "adapter", max_steps=2,
                             batch_size=2, max_length=48, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    assert result.rows == len(rows) and sft.rows == len(rows)
    store.close()


def test_the_generate_demo_runs_a_round_on_standard_library_docstrings(tiny: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from goldloop.cli import main

    res = CliRunner().invoke(main, ["demo", "--task", "generate", "--dir", str(tmp_path / "demo"), "--backend", "fake",
                                    "--embedder", "fake", "--base-model", tiny])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "SIMULATED reviewer" in said and "simulated:pair-judge" in said and "simulated:response-oracle" in said
    assert "held-out real pairs" in said and "NLL change" in said and "demo finished" in said
    import re

    assert re.search(r"pool: 20 docstrings drafted for 20 of \d+ real functions", said), said


def test_the_pair_loop_keeps_rounds_by_held_out_nll_and_carries_kept_rows(tiny: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from goldloop.cli import main
    from goldloop.config import Config
    from goldloop.loop_pairs import call_round
    from goldloop.review import review_states
    from goldloop.store import open_store

    cfg = Config()
    # a change inside the noise is kept without a gain; a clear rise is rejected
    assert call_round([2.0, 2.2, 1.8, 2.1], [2.0, 2.21, 1.79, 2.1], cfg)[:2] == (True, False)
    assert call_round([2.0, 2.2, 1.8, 2.1], [2.3, 2.5, 2.1, 2.4], cfg)[0] is False

    project = tmp_path / "docs"
    runner = CliRunner()
    assert runner.invoke(main, ["-p", str(project), "init", "--task", "generate"]).exit_code == 0
    cfg = Config.load(project)
    cfg.llm.backend, cfg.embed.backend = "fake", "fake"
    cfg.generate.per_label = 2
    cfg.loop.patience = 5
    cfg.trl.base_model, cfg.trl.max_steps, cfg.trl.batch_size, cfg.trl.max_length = tiny, 2, 2, 48
    cfg.save(project)
    for split, part in (("train", PAIRS[:2]), ("heldout", PAIRS[2:])):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in part), encoding="utf-8")
        assert runner.invoke(main, ["-p", str(project), "ingest", str(path), "--split", split]).exit_code == 0
    judge_file = tmp_path / "judge.jsonl"
    judge_file.write_text("".join(json.dumps({"prompt": f"what does the {w} do", "response": f"it {w}s things"}) + "\n"
                                  for w in ["pump", "fan", "saw", "drill", "mixer", "press", "lathe", "loom", "kiln",
                                            "forge", "winch", "hoist", "crane", "valve", "gauge", "meter", "motor",
                                            "rotor", "stator", "relay", "fuse", "switch"]), encoding="utf-8")
    # real prompts with no response (the pool), and the file the simulated oracle answers them from
    tools = ["lamp", "heater", "scanner", "blender", "toaster", "speaker"]
    pool_file, known = tmp_path / "pool.jsonl", tmp_path / "known.jsonl"
    pool_file.write_text("".join(json.dumps({"prompt": f"what does the {w} do"}) + "\n" for w in tools), encoding="utf-8")
    known.write_text("".join(json.dumps({"prompt": f"what does the {w} do", "response": f"it {w}s"}) + "\n"
                             for w in tools), encoding="utf-8")
    assert runner.invoke(main, ["-p", str(project), "ingest", str(pool_file), "--split", "pool"]).exit_code == 0
    res = runner.invoke(main, ["-p", str(project), "loop", "--rounds", "2", "--simulate-drafts", str(judge_file),
                               "--budget", "4", "--simulate-pool", str(known)])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "round 1: reference NLL" in said and "round 2: reference NLL" in said and "ran the 2 round(s)" in said
    store = open_store(project)
    loops = [r.metrics["loop"] for r in store.rounds()]
    assert [m["task"] for m in loops] == ["generate", "generate"]
    assert [j["name"] for j in loops[0]["simulated_reviewers"]] == ["simulated:pair-judge", "simulated:response-oracle"]
    assert all(d.simulated for d in store.decisions())
    # each round drafted responses to [loop] review_budget x pool_share = 3 pool prompts, all answered
    from goldloop.review import suggestions

    for number in (1, 2):
        made = [r for r in suggestions(store, number) if r.is_pair]
        assert len(made) == 3 and all(r.text.startswith("what does the") for r in made)
        answered = review_states(store.decisions(round=number))
        assert all(answered[r.id].action in ("accept", "edit") for r in made)
    assert loops[0]["pool"]["suggested"] == 3 and loops[0]["pool"]["accepted"] + loops[0]["pool"]["rewritten"] == 3
    assert not {r.provenance.parents[0] for r in suggestions(store, 1)} & {r.provenance.parents[0]
                                                                        for r in suggestions(store, 2)}
    assert len(loops[1]["candidate_nll_per_pair"]) == 2
    html = (project / "reports" / "loop.html").read_text(encoding="utf-8")
    assert "held-out reference NLL" in html and "<svg" in html and "simulated:pair-judge" in html
    assert "pool: accepted / rewritten / rejected" in html and "of 3</td>" in html
    report = json.loads((project / "reports" / "loop.json").read_text(encoding="utf-8"))
    assert [x["round"] for x in report["rounds"]] == [1, 2] and "loop report:" in said
    # part of each round aims at the held-out pairs the kept model does worst on
    assert any(r.provenance.strategy == "pair_targeted.v1" for r in store.records(origin="synthetic", round=1))
    if loops[0]["kept"]:                                 # round 2 is judged against round 1's model
        assert loops[1]["baseline"] == 1 and abs(loops[1]["baseline_nll"] - loops[0]["candidate_nll"]) < 1e-3
    store.close()

"""Ingest of prompt -> response pairs (the generate task): located errors, nothing written on
error, normalisation that keeps line breaks, duplicates, and held-out isolation on both sides."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from goldloop.errors import IngestError, StageError
from goldloop.ingest import ingest_file
from goldloop.store import open_store

from .conftest import fake_config, write_csv
from .conftest import ingest_fails as _fails

PAIRS = [(f"Summarise claim {i}: the {w} was damaged on day {i} and repaired after inspection number {i * 7}.",
          f"Claim {i}: {w} damaged, repaired.\n\nInspected ({i * 7}).")
         for i, w in enumerate(["roof", "window", "door", "fence", "garage", "boiler", "car", "boat", "shed", "wall",
                                "floor", "porch"], start=1)]


@pytest.fixture
def env(tmp_path):
    cfg = fake_config(project={"task": "generate"})
    store = open_store(tmp_path / "p")
    yield tmp_path, cfg, store
    store.close()




def test_pairs_are_ingested_with_a_heldout_split_and_line_breaks_kept(env):
    tmp, cfg, store = env
    path = write_csv(tmp / "pairs.csv", [(p, "\r\n" + r.replace("\n\n", "  \n\n\n\n") + "  \n\n\n") for p, r in PAIRS],
                     header=("prompt", "response"))
    report = ingest_file(store, cfg, path)
    assert report.added == len(PAIRS) and report.by_split["heldout"] >= 1 and report.by_split["train"] >= 1
    records = store.records(origin="gold")
    assert all(r.is_pair and r.label == "" for r in records)
    first = next(r for r in records if r.text == PAIRS[0][0])
    assert first.response == PAIRS[0][1]                 # line ends trimmed, blank runs cut to one, ends trimmed
    assert store.verify_audit().ok                       # the response table is audited like every other
    again = ingest_file(store, cfg, path)
    assert again.already_ingested


def test_pairs_from_a_public_source_carry_its_citation_and_licence(env):
    from goldloop.sources import SourceInfo, source_class

    tmp, cfg, store = env
    path = write_csv(tmp / "pairs.csv", PAIRS, header=("prompt", "response"))
    info = SourceInfo.parse("external", "hf:example/claims", "CC-BY-4.0")
    report = ingest_file(store, cfg, path, source=info)
    assert report.added == len(PAIRS)
    assert all(source_class(r) == "external" and r.provenance.params["citation"] == "hf:example/claims"
               and r.provenance.params["license"] == "CC-BY-4.0" for r in store.records(origin="gold"))
    assert store.verify_audit().ok


def test_missing_response_column_and_empty_prompt_are_located(env):
    tmp = env[0]
    _fails(env, write_csv(tmp / "a.csv", PAIRS[:2], header=("prompt", "answer")),
           "a.csv: no column 'response'; map the right one with --response-column", "columns found: prompt, answer")
    rows = [PAIRS[0], ("   ", "an answer"), PAIRS[1], ("a prompt", "")]
    message = _fails(env, write_csv(tmp / "b.csv", rows, header=("prompt", "response")), "2 of 4 rows")
    # each response spans three lines of the file: the rows start on lines 2, 5, 6 and 9
    assert "b.csv line 5: 'prompt' is empty" in message and "b.csv line 9: 'response' is empty" in message
    path = tmp / "c.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response": 3}) + "\n", encoding="utf-8")
    _fails(env, path, "c.jsonl line 1: 'response' must be text, got int 3")


def test_mapped_columns_and_optional_system_and_context(env):
    tmp, cfg, store = env
    path = tmp / "pairs.jsonl"
    path.write_text("".join(json.dumps({"q": p, "a": r, "system": "You are terse.", "context": f"file {i}"}) + "\n"
                            for i, (p, r) in enumerate(PAIRS[:4])), encoding="utf-8")
    report = ingest_file(store, cfg, path, prompt_column="q", response_column="a", split="train")
    assert report.added == 4
    rec = store.records(origin="gold")[0]
    assert rec.system == "You are terse." and rec.context == "file 0"


def test_messages_in_trl_conversational_form(env, tmp_path):
    _, cfg, store = env
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p},
                          {"role": "assistant", "content": r}]} for p, r in PAIRS[:3]]
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    report = ingest_file(store, cfg, path, messages_column="messages", split="train")
    assert report.added == 3
    rec = store.records(origin="gold")[0]
    assert rec.system == "Be brief." and rec.text == PAIRS[0][0] and rec.response.startswith("Claim 1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                            {"role": "user", "content": "c"}]}) + "\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad.jsonl line 1: 'messages' has the turns \['user', 'assistant', 'user'\]"):
        ingest_file(store, cfg, bad, messages_column="messages")


def test_heldout_prompts_and_responses_never_reach_train(env):
    tmp, cfg, store = env
    held = write_csv(tmp / "held.csv", PAIRS[:4], header=("prompt", "response"))
    ingest_file(store, cfg, held, split="heldout")
    same_prompt = (PAIRS[0][0], "A different answer altogether.")
    same_response = ("A brand new question about a different matter entirely?", PAIRS[1][1])
    near_prompt = (PAIRS[2][0].replace("inspection", "the inspection"), "Yet another answer.")
    fresh = PAIRS[6]
    train = write_csv(tmp / "train.csv", [same_prompt, same_response, near_prompt, fresh, PAIRS[3]],
                      header=("prompt", "response"))
    report = ingest_file(store, cfg, train, split="train")
    assert report.added == 1 and report.duplicates == 4
    assert [r.text for r in store.records(origin="gold", split="train")] == [fresh[0]]
    reasons = {row.row: row.reason for row in store.ingest_rows(report.batch)}
    assert "same prompt as gold/heldout" in reasons[1] and "same response as gold/heldout" in reasons[2]
    assert "near-duplicate" in reasons[3] and "same pair as gold/heldout" in reasons[5]
    # auto split: a row tied to a held-out pair goes to held-out, never to train
    auto = write_csv(tmp / "auto.csv", [same_prompt, *PAIRS[7:12]], header=("prompt", "response"))
    ingest_file(store, cfg, auto)
    tied = next(r for r in store.records(origin="gold") if r.response == same_prompt[1])
    assert tied.split == "heldout"


def test_pairs_sharing_a_prompt_land_in_one_split(env):
    tmp, cfg, store = env
    cfg.ingest.heldout_fraction = 0.5
    rows = [(p, r) for p, r in PAIRS] + [(PAIRS[0][0], "A second reference answer."),
                                          (PAIRS[5][0], "Another reference.")]
    ingest_file(store, cfg, write_csv(tmp / "pairs.csv", rows, header=("prompt", "response")))
    by_prompt: dict[str, set] = {}
    for r in store.records(origin="gold"):
        by_prompt.setdefault(r.text, set()).add(r.split)
    assert all(len(splits) == 1 for splits in by_prompt.values())
    assert {s for splits in by_prompt.values() for s in splits} == {"train", "heldout"}


def test_classify_stages_refuse_a_generate_project(env):
    tmp, cfg, store = env
    from goldloop.loop import run_loop
    from goldloop.suggest import suggest

    with pytest.raises(StageError, match="classify"):
        suggest(store, cfg, 1, 2, None, [])

    with pytest.raises(StageError, match="classify task only so far"):
        run_loop(store, cfg, tmp, 1, show_progress=False)


def test_pairs_round_trip_on_sqlite_and_postgresql(any_store):
    from goldloop.records import Record

    pair = Record.gold_pair("Summarise:\n  the claim", "Paid.\n\nIn full.", "heldout", "t.jsonl line 1",
                            system="Be terse.", context="Claim 7")
    plain = Record.gold("a ticket", "billing", source="t.csv line 2")
    prompt = Record.pool_prompt("def f(): pass", "pool.jsonl line 1", system="Be terse.")
    any_store.add_records([pair, plain, prompt])
    back = {r.id: r for r in any_store.records()}
    assert back[pair.id] == pair and back[plain.id] == plain and not back[plain.id].is_pair
    assert back[prompt.id] == prompt and not prompt.is_pair        # a pool prompt keeps its system text
    assert any_store.response_hashes(split="heldout") and not any_store.response_hashes(split="train")
    assert any_store.verify_audit().ok


def test_column_options_of_the_other_task_are_refused(env, tmp_path):
    _, cfg, store = env
    path = write_csv(tmp_path / "p.csv", PAIRS[:2], header=("prompt", "response"))
    with pytest.raises(IngestError, match="map classify projects"):
        ingest_file(store, cfg, path, text_column="prompt")
    with pytest.raises(IngestError, match="map generate projects"):
        ingest_file(store, fake_config(), path, prompt_column="prompt")
    assert store.records() == []

"""The model a `generate` project trains as the writer of suggested responses ([suggest]
responder = "model"): the same greedy text as scoring gives, named by its adapter's digest in
every suggestion's provenance, the pool prompt alone in its input, never a held-out side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs the `train` extra")
pytest.importorskip("peft", reason="needs the `train` extra")

from goldloop.errors import StageError  # noqa: E402
from goldloop.evaluate_pairs import greedy_outputs, load_adapter, train_on_pairs  # noqa: E402
from goldloop.ingest import ingest_file  # noqa: E402
from goldloop.llm import CompletionRequest, LocalLM, adapter_digest  # noqa: E402
from goldloop.records import SUGGEST, Record  # noqa: E402
from goldloop.review import suggestions  # noqa: E402
from goldloop.store import open_store  # noqa: E402
from goldloop.suggest_pairs import responder_llm, suggest_pairs, trained_adapter  # noqa: E402
from goldloop.train import LoraSettings  # noqa: E402

from .conftest import fake_config  # noqa: E402
from .lm_support import build_tiny_llama  # noqa: E402

GOLD = [(f"describe add {i}", f"return x plus {i} .") for i in range(8)]
HELD = [(f"describe secret {i}", f"multiply y by {i} .") for i in range(3)]
POOL = [f"describe pool {i}" for i in range(6)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.manual_seed(0)                        # the random weights, the same on every run
    words = [w for p, r in GOLD + HELD for w in f"{p} {r}".split()] + [w for p in POOL for w in p.split()]
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), words)


def _adapter(tiny: str, out: Path, steps: int = 3) -> Path:
    train_on_pairs([Record.gold_pair(p, r) for p, r in GOLD], tiny, out, max_steps=steps, batch_size=4,
                   learning_rate=3e-2, max_length=64, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    return out


def test_local_lm_answers_as_scoring_does_and_names_its_adapter(tiny: str, tmp_path: Path) -> None:
    adapter = _adapter(tiny, tmp_path / "a")
    llm = LocalLM(tiny, adapter, batch_size=2, no_repeat_ngram=0)
    assert llm.backend == "local" and llm.model == f"{tiny}+adapter:{adapter_digest(adapter)}"
    records = [Record.gold_pair(p, "") for p in POOL[:3]]
    requests = [CompletionRequest(key=f"k{i}", messages=({"role": "user", "content": r.text},), max_tokens=8,
                                  temperature=0.0) for i, r in enumerate(records)]
    got = {res.key: res for res in llm.complete(requests)}
    model, tok = load_adapter(tiny, adapter)
    want = greedy_outputs(model, tok, records, max_new_tokens=8)
    assert [got[f"k{i}"].text.strip() for i in range(3)] == want
    assert all(res.ok and res.tokens_in > 0 and res.finish_reason in ("stop", "length") for res in got.values())
    assert llm.account.succeeded == 3 and llm.account.requested == 3
    # a stop string cuts the text; sampling with a seed repeats itself
    first = want[0].split()[0] if want[0] else None
    if first:
        cut = next(iter(llm.complete([CompletionRequest(key="s", messages=requests[0].messages, max_tokens=8,
                                                        temperature=0.0, stop=(first,))])))
        assert cut.text == "" or first not in cut.text
    sampled = [CompletionRequest(key="r", messages=requests[1].messages, max_tokens=6, temperature=1.0, seed=7)]
    assert next(iter(llm.complete(sampled))).text == next(iter(llm.complete(sampled))).text
    # retraining the adapter changes its digest, and so every request key made with it
    assert adapter_digest(_adapter(tiny, tmp_path / "b", steps=5)) != adapter_digest(adapter)
    with pytest.raises(StageError, match="no LoRA adapter"):
        LocalLM(tiny, tmp_path)


def _project(tmp_path: Path, tiny: str, mode: str):
    cfg = fake_config(project={"task": "generate"}, llm={"mode": mode}, suggest={"responder": "model"},
                      trl={"base_model": tiny})
    store = open_store(tmp_path)
    for name, rows, split in (("train.jsonl", GOLD, "train"), ("held.jsonl", HELD, "heldout")):
        (tmp_path / name).write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
        ingest_file(store, cfg, tmp_path / name, split=split)
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in POOL))
    ingest_file(store, cfg, tmp_path / "pool.jsonl", split="pool")
    return cfg, store


@pytest.mark.parametrize("mode", ["completion", "chat"])
def test_the_trained_model_writes_the_suggestions_from_the_prompt_alone(tiny: str, tmp_path: Path, mode: str) -> None:
    cfg, store = _project(tmp_path, tiny, mode)
    with pytest.raises(StageError, match="none is trained yet"):
        responder_llm(cfg, store, tmp_path)
    # trained until it answers a prompt with a response's words, not a bare end of turn
    adapter = _adapter(tiny, tmp_path / ".goldloop" / "adapters" / "gold-only", steps=30)
    assert trained_adapter(store, tmp_path) == adapter
    llm = responder_llm(cfg, store, tmp_path)
    assert isinstance(llm, LocalLM)
    sent: list[CompletionRequest] = []
    complete = llm.complete
    llm.complete = lambda reqs: (sent.extend(reqs), complete(reqs))[1]          # type: ignore[method-assign]
    report = suggest_pairs(store, cfg, 1, 4, llm, None)
    errors = [g.error for g in store.generations(round=1) if g.error]
    assert report.picked == 4 and report.drafted + report.failed == 4 and report.drafted >= 1, errors
    made = [r for r in suggestions(store, 1) if r.is_pair]
    assert len(made) == report.drafted
    for rec in made:
        p = rec.provenance
        assert p.strategy == SUGGEST and p.backend == "local" and p.model == llm.model and not rec.real
    # the model sees each pool prompt alone, as a chat turn, and nothing held out
    assert all(r.messages and len(r.messages) == 1 and r.messages[0]["content"] in POOL and r.temperature == 0.0
               for r in sent)
    assert not any("secret" in r.messages[0]["content"] for r in sent)
    # a kept loop round's adapter wins over gold only; a missing one is named, not skipped
    number = store.open_round()
    store.finish_round(number, None, {"loop": {"kept": True}})
    with pytest.raises(StageError, match=f"round {number} is the kept round"):
        trained_adapter(store, tmp_path)
    kept = _adapter(tiny, tmp_path / ".goldloop" / "adapters" / f"round-{number}")
    assert trained_adapter(store, tmp_path) == kept
    store.close()

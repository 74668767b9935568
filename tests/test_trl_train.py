"""The `generate` trainer: a few TRL steps of SFT, DPO and KTO with LoRA on a tiny local model.

The model is a randomly initialised two-layer Llama with a word-level tokenizer trained on
the test data, built in a temporary folder: no download, a few seconds per method on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs the `train` extra")
pytest.importorskip("peft", reason="needs the `train` extra")

from click.testing import CliRunner  # noqa: E402

from goldloop.cli import main  # noqa: E402
from goldloop.errors import StageError  # noqa: E402
from goldloop.train import LoraSettings, train_generator  # noqa: E402
from goldloop.train._trl_data import load_training_rows  # noqa: E402

from .lm_support import build_tiny_llama  # noqa: E402

PROMPTS = ["classify this ticket : my invoice shows a double charge",
           "classify this ticket : the server is down again",
           "classify this ticket : i cannot reset my password",
           "classify this ticket : the refund never arrived"]
GOOD = ["billing", "outage", "account", "billing"]
BAD = ["outage", "billing", "billing", "account"]


def _rows(method: str) -> list[dict]:
    if method == "sft-chat":
        return [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": g}]}
                for p, g in zip(PROMPTS, GOOD)]
    if method == "sft":
        return [{"prompt": p, "completion": " " + g} for p, g in zip(PROMPTS, GOOD)]
    if method == "dpo":
        return [{"prompt": p, "chosen": " " + g, "rejected": " " + b} for p, g, b in zip(PROMPTS, GOOD, BAD)]
    return ([{"prompt": p, "completion": " " + g, "label": True} for p, g in zip(PROMPTS, GOOD)]
            + [{"prompt": p, "completion": " " + b, "label": False} for p, b in zip(PROMPTS, BAD)])


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random 2-layer Llama and a word-level tokenizer with a chat template, saved locally."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), PROMPTS + GOOD + BAD)


@pytest.mark.parametrize("dataset", ["sft", "sft-chat", "dpo", "kto"])
def test_a_few_steps_train_and_save_an_adapter(dataset: str, tiny_model: str, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    method = dataset.split("-")[0]
    data = tmp_path / "export"
    data.mkdir()
    _write_jsonl(data / "train.jsonl", _rows(dataset))
    (data / "README.md").write_text("dataset card", encoding="utf-8")   # a card next to the data is ignored
    out = tmp_path / "adapter"
    result = train_generator(data, method, base_model=tiny_model, out_dir=out, max_steps=3, batch_size=2,
                             learning_rate=1e-2, max_length=64, logging_steps=1,
                             lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    assert result.steps == 3 and result.rows == len(_rows(dataset))
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    assert torch.isfinite(torch.tensor(result.train_loss))
    assert (out / "adapter_config.json").exists()
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b, "the adapter holds no LoRA weights"
    # LoRA starts B at zero: any non-zero B means the optimiser changed the adapter
    assert any(float(v.abs().max()) > 0 for v in lora_b)
    summary = json.loads((out / "goldloop-train.json").read_text(encoding="utf-8"))
    assert summary["format"] == "goldloop-train v1" and summary["method"] == method and summary["steps"] == 3


@pytest.mark.parametrize("storage", ["jsonl", "parquet", "hf"])
def test_trains_on_what_goldloop_export_writes(storage: str, project, tiny_model: str, tmp_path: Path) -> None:
    from goldloop.export import export_snapshot
    from goldloop.snapshot import build_snapshot

    _, cfg, store = project
    snap = build_snapshot(store, cfg, store.open_round())
    export_snapshot(store, snap, "sft", tmp_path / "export", storage=storage)
    rows = load_training_rows(tmp_path / "export", "sft")
    assert len(rows) == len(store.records(origin="gold", split="train"))
    assert set(rows[0]) == {"prompt", "completion"}
    result = train_generator(tmp_path / "export", "sft", base_model=tiny_model, out_dir=tmp_path / "adapter",
                             max_steps=2, batch_size=2, max_length=64)
    assert result.steps == 2 and result.rows == len(rows)


def test_a_rerun_resumes_from_the_last_checkpoint(tiny_model: str, tmp_path: Path) -> None:
    data = _write_jsonl(tmp_path / "sft.jsonl", _rows("sft"))
    out = tmp_path / "adapter"
    settings = dict(base_model=tiny_model, out_dir=out, batch_size=2, max_length=64, save_steps=2)
    first = train_generator(data, "sft", max_steps=2, **settings)
    assert first.steps == 2 and (out / "checkpoint-2").is_dir()
    second = train_generator(data, "sft", max_steps=4, **settings)
    assert second.resumed_from == str(out / "checkpoint-2") and second.steps == 4
    assert second.losses[:len(first.losses)] == first.losses


def test_the_train_command_takes_an_export_folder(tiny_model: str, tmp_path: Path) -> None:
    data = tmp_path / "export"
    data.mkdir()
    _write_jsonl(data / "sft.jsonl", _rows("sft"))
    out = tmp_path / "adapter"
    result = CliRunner().invoke(main, ["train", str(data), "--method", "sft", "--base-model", tiny_model,
                                       "--out", str(out), "--max-steps", "2", "--batch-size", "2",
                                       "--max-length", "64", "--lora-r", "4", "--unmanaged"])
    assert result.exit_code == 0, result.output
    assert (out / "adapter_model.safetensors").exists()
    assert "2 steps" in result.output
    refused = CliRunner().invoke(main, ["train", str(data), "--method", "sft", "--base-model", tiny_model,
                                        "--out", str(tmp_path / "again")])
    assert refused.exit_code == 1 and "has no goldloop-export.json" in refused.output


def test_training_checks_the_policy_and_is_traced(project, tiny_model: str, tmp_path: Path) -> None:
    """goldloop train checks [policy] (sign-off included) for the export's snapshot, and records
    the trained model so that `goldloop trace` reaches it."""
    from goldloop.export import export_snapshot
    from goldloop.serve import add_user
    from goldloop.snapshot import build_snapshot

    path, cfg, store = project
    snap = build_snapshot(store, cfg, store.open_round())
    export_snapshot(store, snap, "sft", tmp_path / "export")
    cfg.policy.signoff_required = True
    cfg.save(path)
    args = ["-p", str(path), "train", str(tmp_path / "export"), "--method", "sft", "--base-model", tiny_model,
            "--out", str(tmp_path / "adapter"), "--max-steps", "1", "--batch-size", "2", "--max-length", "64"]
    blocked = CliRunner().invoke(main, args)
    assert blocked.exit_code == 1 and "at the train stage" in blocked.output and "signoff" in blocked.output
    add_user(store, "alice", "approver", "correct horse battery")
    signed = CliRunner().invoke(main, ["-p", str(path), "snapshot", "signoff", snap.id, "--approver", "alice",
                                       "--password-stdin"], input="correct horse battery\n")
    assert signed.exit_code == 0, signed.output
    trained = CliRunner().invoke(main, args)
    assert trained.exit_code == 0, trained.output
    runs = [t for t in store.trainings(snap.id) if t["trainer"] == "trl:sft"]
    assert len(runs) == 1 and runs[0]["model"] == str((tmp_path / "adapter").resolve())
    gold = snap.record_ids[0]
    trace = json.loads(CliRunner().invoke(main, ["-p", str(path), "trace", gold, "--json"]).output)
    assert any(t["trainer"] == "trl:sft" for t in trace["trained"])


def test_the_train_command_takes_its_settings_from_goldloop_toml(project, tiny_model: str, tmp_path: Path) -> None:
    """[trl] in goldloop.toml sets what the command line leaves out; an option given wins."""
    from goldloop.export import export_snapshot
    from goldloop.snapshot import build_snapshot

    path, cfg, store = project
    snap = build_snapshot(store, cfg, store.open_round())
    export_snapshot(store, snap, "sft", tmp_path / "export")
    cfg.trl.base_model, cfg.trl.max_steps, cfg.trl.batch_size, cfg.trl.max_length = tiny_model, 3, 2, 64
    cfg.trl.lora_r = 4
    cfg.save(path)
    out = tmp_path / "adapter"
    result = CliRunner().invoke(main, ["-p", str(path), "train", str(tmp_path / "export"), "--out", str(out),
                                       "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "goldloop-train.json").read_text(encoding="utf-8"))
    assert summary["base_model"] == tiny_model and summary["steps"] == 2
    assert summary["settings"]["batch_size"] == 2 and summary["lora"]["r"] == 4


def test_bad_exports_are_named_by_file_row_and_field(tmp_path: Path) -> None:
    rows = _rows("dpo")
    rows[2] = {"prompt": PROMPTS[2], "chosen": " account"}
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(StageError, match=r"train.jsonl row 3: no 'rejected'"):
        load_training_rows(tmp_path, "dpo")
    _write_jsonl(path, _rows("sft"))
    with pytest.raises(StageError, match=r"needs the columns prompt/chosen/rejected"):
        load_training_rows(tmp_path, "dpo")
    kto = _rows("kto")
    kto[1]["label"] = "yes"
    _write_jsonl(path, kto)
    with pytest.raises(StageError, match=r"row 2: 'label' must be true or false"):
        load_training_rows(tmp_path, "kto")
    _write_jsonl(path, [r for r in _rows("kto") if r["label"]])
    with pytest.raises(StageError, match="both desirable"):
        load_training_rows(tmp_path, "kto")
    path.write_text('{"prompt": "a", "completion": "b"}\nnot json\n', encoding="utf-8")
    with pytest.raises(StageError, match="train.jsonl line 2: not valid JSON"):
        load_training_rows(tmp_path, "sft")
    with pytest.raises(StageError, match="no such file or folder"):
        load_training_rows(tmp_path / "missing", "sft")


def test_parquet_and_chat_message_exports_load(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows("sft-chat")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-0.parquet")
    loaded = load_training_rows(tmp_path, "sft")
    assert loaded == rows

"""The `generate` trainer: TRL's SFT, DPO or KTO trainer with a LoRA adapter, on an export folder.

Needs the `train` extra (``pip install "goldloop[train]"``: TRL, PEFT, accelerate). It runs
on a CUDA GPU in bf16 (fp16 where bf16 is not supported) and on a CPU in float32, where only
small models are practical. The result is a PEFT adapter in ``out_dir`` (``adapter_config.json``,
``adapter_model.safetensors``, the tokenizer) and ``goldloop-train.json``, a readable record of
what was trained on what. Run it again on the same ``out_dir`` with ``save_steps`` set and it
resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StageError
from ._trl_data import METHODS, load_training_rows

FORMAT = "goldloop-train v1"
SUMMARY_FILE = "goldloop-train.json"
DEFAULT_LEARNING_RATE = {"sft": 2e-4, "dpo": 5e-5, "kto": 5e-5}


@dataclass
class LoraSettings:
    """The LoRA adapter trained on top of the frozen base model."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass
class GeneratorTraining:
    """What :func:`train_generator` did; also written to ``out_dir/goldloop-train.json``."""

    method: str
    base_model: str
    dataset_dir: str
    out_dir: str
    rows: int
    steps: int
    losses: list[float]
    train_loss: float
    device: str
    precision: str
    seconds: float
    resumed_from: str | None = None
    lora: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def _require_train_extra() -> None:
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise StageError("training a generator needs TRL and PEFT: install goldloop with its `train` extra "
                         "(pip install -e \".[train]\")") from exc


def _precision() -> tuple[str, str]:
    """(device, precision): bf16 on GPUs that have it, fp16 on older GPUs, fp32 on a CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "cpu", "fp32"


def _load_base(base_model: str, precision: str) -> tuple[Any, Any]:
    import torch

    from ._causal_lm import load_causal_lm

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return load_causal_lm(base_model, dtype)


def _last_checkpoint(out_dir: Path) -> str | None:
    checkpoints = [p for p in out_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    if not checkpoints:
        return None
    return str(max(checkpoints, key=lambda p: int(p.name.split("-")[-1])))


def train_generator(dataset_dir: str | Path, method: str = "sft", *, base_model: str, out_dir: str | Path,
                    lora: LoraSettings | None = None, max_steps: int = 200, learning_rate: float | None = None,
                    batch_size: int = 4, gradient_accumulation: int = 1, max_length: int = 1024,
                    beta: float = 0.1, save_steps: int = 0, logging_steps: int = 10,
                    seed: int = 0) -> GeneratorTraining:
    """Fine-tune ``base_model`` with a LoRA adapter on an exported dataset, by SFT, DPO or KTO.

    ``dataset_dir`` is a folder written by ``goldloop export --format METHOD`` (or one JSONL /
    Parquet file, or a saved ``datasets`` folder). ``learning_rate`` defaults to 2e-4 for SFT
    and 5e-5 for DPO and KTO (LoRA rates); ``beta`` is DPO's and KTO's strength of the pull
    towards the base model. ``save_steps`` > 0 writes a checkpoint every that many steps, and
    a later call with the same ``out_dir`` resumes from the last one.

    Example (a GPU and a hub model; see tests/test_trl_train.py for a tiny local one)::

        result = train_generator("exports/round-3-dpo", "dpo", base_model="Qwen/Qwen2.5-0.5B-Instruct",
                                 out_dir="adapters/round-3", max_steps=300)
        print(result.train_loss, result.out_dir)
    """
    if method not in METHODS:
        raise StageError(f"unknown training method {method!r}; use one of {', '.join(METHODS)}")
    if max_steps < 1 or batch_size < 1 or gradient_accumulation < 1 or max_length < 8:
        raise StageError("max_steps, batch_size and gradient_accumulation must be at least 1, max_length at least 8")
    if method == "kto" and batch_size < 2:
        raise StageError("KTO estimates its reference point from mismatched pairs within a batch: "
                         "use a batch_size of at least 2")
    _require_train_extra()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import trl
    from peft import LoraConfig

    lora = lora or LoraSettings()
    rows = load_training_rows(Path(dataset_dir), method)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device, precision = _precision()
    model, tokenizer = _load_base(base_model, precision)
    lr = DEFAULT_LEARNING_RATE[method] if learning_rate is None else learning_rate
    common: dict[str, Any] = dict(
        output_dir=str(out), max_steps=max_steps, learning_rate=lr, per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation, max_length=max_length, seed=seed,
        logging_steps=max(1, min(logging_steps, max_steps)), report_to="none",
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        gradient_checkpointing=device == "cuda", disable_tqdm=True, dataloader_num_workers=0,
    )
    if method == "sft":
        args: Any = trl.SFTConfig(**common)
        trainer_cls: Any = trl.SFTTrainer
    elif method == "dpo":
        args = trl.DPOConfig(**common, beta=beta)
        trainer_cls = trl.DPOTrainer
    else:
        args = trl.KTOConfig(**common, beta=beta)
        trainer_cls = trl.KTOTrainer
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, task_type="CAUSAL_LM")
    datasets.disable_progress_bars()            # the summary below says what was trained; no bars per map
    trainer = trainer_cls(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=peft_config)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)   # losses go to goldloop-train.json, not to stdout as dicts
    started = time.perf_counter()
    resume = _last_checkpoint(out) if save_steps else None
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    trainer.save_model(str(out))
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    result = GeneratorTraining(
        method=method, base_model=base_model, dataset_dir=str(dataset_dir), out_dir=str(out), rows=len(rows),
        steps=int(trainer.state.global_step), losses=losses, train_loss=float(output.training_loss),
        device=device, precision=precision, seconds=round(seconds, 3), resumed_from=resume, lora=asdict(lora),
        settings={"learning_rate": lr, "batch_size": batch_size, "gradient_accumulation": gradient_accumulation,
                  "max_length": max_length, "max_steps": max_steps, "beta": beta if method != "sft" else None,
                  "seed": seed, "trl": trl.__version__})
    if not math.isfinite(result.train_loss):
        raise StageError(f"training diverged: the {method} loss is {result.train_loss}; lower the learning rate")
    (out / SUMMARY_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return result

"""Commands that hand data to trainers: export (a snapshot for TRL, datasets, OpenAI) and train
(a generator fine-tuned with TRL on an export; its settings are goldloop.toml's [trl])."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ..config import TrlConfig
from ..errors import GoldloopError
from ..governance import check_training_policy, enforce
from ..snapshot import resolve_snapshot
from ._options import section_options, with_options
from ._shared import Project, err, fail_cleanly, out, pass_project


@click.command(name="export")
@click.argument("snapshot_ref", metavar="SNAPSHOT")
@click.option("--format", "fmt", type=click.Choice(["classification", "sft", "sft-messages", "dpo", "kto", "reward",
                                                    "openai", "openai-sft"]), required=True,
              help="classification (text, label); sft (prompt, completion); sft-messages (messages); dpo (prompt, "
                   "chosen, rejected); kto (prompt, completion, label); reward (chosen, rejected[, prompt]); "
                   "openai (chat JSONL, assistant = label); openai-sft (chat JSONL of the sft rows).")
@click.option("--to", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (new or empty); it gets the data, a dataset card README.md and goldloop-export.json.")
@click.option("--storage", type=click.Choice(["jsonl", "parquet", "hf"]), default="jsonl", show_default=True,
              help="jsonl: JSON Lines; parquet: one Parquet file; hf: a `datasets` folder (load_from_disk).")
@click.option("--overwrite", is_flag=True, help="Replace what the --to folder holds (never a project folder).")
@click.option("--prompt-mode", type=click.Choice(["generation", "instruction"]), default=None,
              help="Prompts of signal rows: the generator's exact prompt, or an instruction from the label "
                   "(default: [export] prompt_mode).")
@pass_project
@fail_cleanly
def export(project: Project, snapshot_ref: str, fmt: str, out_dir: Path, storage: str, overwrite: bool,
           prompt_mode: str | None) -> None:
    """Write a snapshot for a trainer (TRL, Hugging Face datasets, OpenAI) with a dataset card.

    SNAPSHOT is an id, a unique id prefix, a name (round-1) or `latest`. The snapshot's export
    policies are checked first; a failure blocks with the rule and its numbers.
    """
    from ..export import export_snapshot

    cfg, store = project.cfg, project.store
    snap = resolve_snapshot(store, snapshot_ref)
    results = enforce(store, cfg, snap, "export")
    result = export_snapshot(store, snap, fmt, out_dir, storage=storage, overwrite=overwrite,
                             policy_results=[r.to_json() for r in results],
                             prompt_mode=prompt_mode or cfg.export.prompt_mode, item_name=cfg.generate.item_name,
                             include_gold=cfg.export.include_gold, project=cfg.project.name,
                             license=cfg.export.license)
    out.print(f"{fmt} export of snapshot {result.snapshot_id}: {result.rows} rows, "
              f"{result.synthetic_share:.1%} synthetic -> {escape(str(result.path))}")
    for reason, count in sorted(result.excluded.items()):
        out.print(f"  left out: {count} signal row(s): {escape(reason)}")
    for note in result.notes:
        out.print(f"  note: {escape(note)}")


@click.command()
@click.argument("export_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the LoRA adapter, the tokenizer and goldloop-train.json.")
@section_options(TrlConfig, "trl")
@click.option("--unmanaged", is_flag=True, help="Train on a folder that goldloop export did not write (no "
                                                "snapshot, so no [policy] can be checked).")
@pass_project
@fail_cleanly
def train(project: Project, export_dir: Path, out_dir: Path, unmanaged: bool, **given: Any) -> None:
    """Fine-tune a generator on an export folder (goldloop export) with TRL and a LoRA adapter.

    Every setting below can also be kept in goldloop.toml's [trl] section; an option given here
    wins over it. Needs the `train` extra. Uses a CUDA GPU in bf16/fp16 when there is one, else
    the CPU (practical for small models only).
    """
    from ..train import LoraSettings, train_generator

    in_project = project.has_config
    s = with_options(project.cfg.trl if in_project else TrlConfig(), given)
    if not s.base_model:
        raise GoldloopError("name the model to adapt: --base-model MODEL (a local folder or a Hugging Face "
                            "model id), or [trl] base_model in goldloop.toml")
    snapshot_id = None
    if not unmanaged:
        found = check_training_policy(export_dir, project.store if in_project else None,
                                      project.cfg if in_project else None)
        if found.note:
            err.print(f"[dim]{escape(found.note)}[/dim]")
        snapshot_id = found.snapshot_id
    result = train_generator(export_dir, s.method, base_model=s.base_model, out_dir=out_dir,
                             lora=LoraSettings(r=s.lora_r, alpha=s.lora_alpha, dropout=s.lora_dropout),
                             max_steps=s.max_steps, learning_rate=s.learning_rate or None, batch_size=s.batch_size,
                             gradient_accumulation=s.gradient_accumulation, max_length=s.max_length, beta=s.beta,
                             save_steps=s.save_steps, seed=s.seed)
    last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    out.print(f"{result.method}: {result.steps} steps on {result.rows} rows in {result.seconds:.0f} s "
              f"({result.device}, {result.precision}); mean loss {result.train_loss:.4f}, last {last}")
    out.print(f"adapter: {escape(result.out_dir)}")
    if snapshot_id is not None:
        project.store.add_training(snapshot_id, f"trl:{result.method}", result.out_dir,
                                   {"base_model": result.base_model, "steps": result.steps, "rows": result.rows,
                                    "train_loss": result.train_loss, "device": result.device})

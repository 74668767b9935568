"""The dataset card (README.md) of an export: Hugging Face front matter and a body saying what is in it.

The front matter (``configs`` / ``data_files``) makes ``datasets.load_dataset(folder)`` load
the export; the body states the synthetic share, where the rows came from (origin, strategy,
model, generator backend, reviewer, round), the generators and reviewers, the policy results
and the snapshot's manifest. Every value from the data is written as a JSON string inside
the YAML (JSON strings are YAML scalars) and as escaped text in the Markdown, so a label or a
reviewer's name cannot change the card's structure.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from ..records import Record, Snapshot
from ..sources import SourceTally
from ._rows import FORMATS, METADATA_TYPE, ExportRow, ExportRows

TRL_USE = {
    "classification": "a text-classification trainer (e.g. `transformers`' `Trainer` with a sequence-classification "
                      "model), or goldloop's own classifier",
    "sft": "`trl.SFTTrainer(model=..., train_dataset=ds)` (prompt-completion: the loss is on the completion)",
    "sft-messages": "`trl.SFTTrainer(model=..., train_dataset=ds)` (conversational: the tokenizer's chat "
                    "template is applied)",
    "dpo": "`trl.DPOTrainer(model=..., train_dataset=ds)`",
    "kto": "`trl.KTOTrainer(model=..., train_dataset=ds)`",
    "reward": "`trl.RewardTrainer(model=..., train_dataset=ds)`",
    "openai": "OpenAI fine-tuning: upload the `train-*.jsonl` file with `purpose=\"fine-tune\"`",
    "openai-sft": "OpenAI fine-tuning: upload the `train-*.jsonl` file with `purpose=\"fine-tune\"`",
}


def _md(value: Any) -> str:
    """Data as one line of Markdown text: no HTML, no table breaks, no formatting."""
    text = " ".join(str(value).split())
    for ch in "\\`*_[]<>|#":
        text = text.replace(ch, "\\" + ch)
    return text or "(none)"


def _table(title: str, counts: Counter[str]) -> list[str]:
    lines = [f"| {title} | rows |", "|---|---:|"]
    lines += [f"| {_md(name)} | {n} |" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    return lines


def _plain(result: Any) -> Any:
    """A policy result as JSON-able data, whatever shape the policy layer gives it."""
    if hasattr(result, "to_json"):
        return result.to_json()
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if isinstance(result, Mapping):
        return {str(k): v for k, v in result.items()}
    return str(result)


def policy_json(policy_results: Iterable[Any] | Mapping[str, Any] | None) -> list[Any] | None:
    """The policy results passed to an export, as a JSON-able list (None: none were passed)."""
    if policy_results is None:
        return None
    if isinstance(policy_results, Mapping):
        return [{"rule": k, **(v if isinstance(v, Mapping) else {"result": _plain(v)})}
                for k, v in policy_results.items()]
    return [_plain(r) for r in policy_results]


class Tally:
    """What the card says of an export's rows, summed as they are written (the rows are not kept).

    Counts of the rows' trained-towards records by origin, strategy, model, backend, reviewer and
    round; the synthetic share; the generators and reviewers; the source classes and citations of
    every record the rows show. A record shown by two rows is counted once: for an export whose
    rows each show their own record (``unique``) only edits' parents are remembered for that.
    """

    def __init__(self, unique: bool = False) -> None:
        self.unique = unique
        self.rows = self.made = 0
        self.counts: dict[str, Counter[str]] = {k: Counter() for k in ("origin", "strategy", "model", "backend",
                                                                      "reviewer", "round")}
        self.generators: Counter[str] = Counter()
        self.reviewers: Counter[str] = Counter()
        self.simulated: set[str] = set()
        self.sources = SourceTally()
        self._seen: set[str] = set()

    def add(self, row: ExportRow) -> None:
        rec, gen, meta = row.sides[0], row.generators[0], row.data["metadata"]
        self.rows += 1
        self.made += rec.origin != "gold"
        self.counts["origin"][rec.origin] += 1
        self.counts["strategy"][gen.provenance.strategy or "(none)"] += 1
        self.counts["model"][gen.provenance.model or ("(human data)" if rec.origin == "gold" else "(unknown)")] += 1
        self.counts["backend"][gen.provenance.backend or ("(human data)" if rec.origin == "gold" else "(unknown)")] += 1
        self.counts["reviewer"][meta.get("reviewer") or "(no reviewer action)"] += 1
        self.counts["round"][str(meta.get("round") if rec.origin != "gold" else "gold")] += 1
        if meta.get("reviewer"):
            self.reviewers[meta["reviewer"]] += 1
            if meta.get("simulated"):
                self.simulated.add(meta["reviewer"])
        for side, source in zip(row.sides, row.generators):
            self._shown(side, remember=not self.unique)
            if source is not side:
                self._shown(source, remember=True)

    def _shown(self, rec: Record, remember: bool) -> None:
        if remember:
            if rec.id in self._seen:
                return
            self._seen.add(rec.id)
        self.sources.add(rec)
        if rec.origin == "synthetic":
            p = rec.provenance
            self.generators[f"{p.strategy} with {p.backend} / {p.model} (template {p.template_hash[:12]})"] += 1

    @property
    def share(self) -> float:
        """Share of rows whose trained-towards record is not gold (synthetic or edited)."""
        return self.made / self.rows if self.rows else 0.0


def features_yaml(schema: pa.Schema | pa.StructType) -> list[dict[str, Any]]:
    """The ``datasets`` features of an Arrow schema in the card's ``dataset_info`` form.

    With them in the card, ``load_dataset(folder)`` types every column the same way from
    JSONL as from Parquet, even a metadata field that is null in every row.
    """
    fields = list(schema) if isinstance(schema, pa.Schema) else [schema.field(i) for i in range(schema.num_fields)]
    return [_feature(f.name, f.type) for f in fields]


def _feature(name: str, kind: pa.DataType) -> dict[str, Any]:
    if pa.types.is_struct(kind):
        return {"name": name, "struct": features_yaml(kind)}
    if pa.types.is_list(kind):
        inner = kind.value_type
        if pa.types.is_struct(inner):
            return {"name": name, "list": features_yaml(inner)}
        return {"name": name, "list": {"dtype": _DTYPES[inner]}}
    return {"name": name, "dtype": _DTYPES[kind]}


_DTYPES = {pa.string(): "string", pa.int64(): "int64", pa.bool_(): "bool", pa.float64(): "float64"}


def render_card(rows: ExportRows, tally: Tally, snapshot: Snapshot, *, storage: str,
                data_files: list[str], policy_results: list[Any] | None, project: str, license: str,
                version: str, sidecar_files: list[str] | None = None) -> str:
    """The README.md of an export: ``rows`` says what its format is, ``tally`` what was written."""
    counts = tally.counts
    share = tally.share
    yaml = ["---", f"license: {json.dumps(license)}", f"pretty_name: {json.dumps(f'{project} {rows.format} ({snapshot.name})')}",
            "tags:", "- goldloop", "- synthetic", f"- {json.dumps(rows.format)}",
            "configs:", "- config_name: default", "  data_files:", "  - split: train", "    path:"]
    yaml += [f"    - {json.dumps(path)}" for path in data_files]
    data_schema = pa.schema([f for f in rows.schema if f.name in rows.columns])
    info = [("default", features_yaml(data_schema))]
    if sidecar_files:
        yaml += ["- config_name: metadata", "  data_files:", "  - split: train", "    path:"]
        yaml += [f"    - {json.dumps(path)}" for path in sidecar_files]
        info.append(("metadata", features_yaml(METADATA_TYPE)))
    yaml.append("dataset_info:")
    for name, features in info:
        yaml += [f"- config_name: {name}", f"  features: {json.dumps(features)}"]
    yaml.append("---")

    pair = rows.format in ("dpo", "reward")
    body = [f"# {_md(project)}: {rows.format} export of snapshot {snapshot.id}", "",
            f"Exported by goldloop {version} on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} from "
            f"snapshot `{snapshot.id}` ({_md(snapshot.name)}, round {snapshot.round}); storage: {storage}.", "",
            f"**Synthetic share: {share:.1%}** of {tally.rows} rows "
            f"({tally.made} synthetic or edited, {tally.rows - tally.made} gold)"
            + (", counted on the chosen side of each pair." if pair else "."),
            f"The snapshot itself is {snapshot.manifest.get('synthetic_share', 0):.1%} synthetic "
            f"({snapshot.manifest.get('records', len(snapshot.record_ids))} records).", "",
            "## Format", "", f"{FORMATS[rows.format]}.", "",
            f"Data: {', '.join(f'`{name}`' for name in data_files)} (the name carries a fingerprint of the content, "
            "so `load_dataset` never serves an older export of a folder with the same name from its cache).", "",
            f"Columns: {', '.join(f'`{c}`' for c in rows.columns)}. Use with {TRL_USE[rows.format]}.", ""]
    if rows.sidecar:
        body += [f"`{data_files[0]}` holds only what OpenAI's fine-tuning accepts (`messages`); the provenance of "
                 f"line *n* is line *n* of `{(sidecar_files or [''])[0]}` (config `metadata`).", ""]
    else:
        body += ["Every row has a `metadata` struct: the record it trains towards (`record_id`, `origin`, "
                 "`record_label`), its strategy, model and round, the reviewer and the action it came from "
                 "(`decision_id`, `comparison_id` or `ranking_id`; `rejected_id` for the other side of a pair) and "
                 "where the prompt came from (`prompt_source`: `generation` = the exact prompt the generator "
                 "received, `instruction` = a short instruction built from the label). TRL's trainers keep only "
                 "the columns they use; to drop it yourself: `ds = ds.remove_columns(\"metadata\")`.", ""]
    load = ("from datasets import load_from_disk\nds = load_from_disk(\"EXPORT_DIR\")" if storage == "hf" else
            "from datasets import load_dataset\nds = load_dataset(\"EXPORT_DIR\", split=\"train\")")
    body += ["```python", load, "```", ""]
    body += ["## Where the rows came from", ""]
    for key, title in (("origin", "origin"), ("strategy", "strategy"), ("model", "model"),
                       ("backend", "generator backend"), ("reviewer", "reviewer"), ("round", "round")):
        body += _table(title, counts[key]) + [""]

    body += ["## Source classes", "",
             "Where each record behind these rows came from: `first_party` (the team's own records), `llm` (drafted "
             "by a language model, or a reviewer's edit of a draft), `simulator`, `external` (a public source, with "
             "its citation and licence).", ""]
    body += ["| class | records |", "|---|---|"] + [f"| {c} | {n} |" for c, n in tally.sources.counts().items() if n]
    cited = tally.sources.citations()
    if cited:
        body += ["", "External sources:", ""] + [
            f"- {_md(c['citation'])}: {c['rows']} records, licence {_md(c['license']) if c['license'] else '(none given)'}"
            for c in cited]
    body += [""]

    body += ["## Generators", ""]
    body += [f"- {_md(g)}: drafted {n} of the records shown" for g, n in sorted(tally.generators.items())] \
        or ["- none: no synthetic rows"]
    body += ["", "## Reviewers", ""]
    body += [f"- {_md(r)}: {n} rows" + (" (SIMULATED reviewer: not a person; its decisions are not human review)"
                                        if r in tally.simulated else "")
             for r, n in sorted(tally.reviewers.items())] or ["- none: no reviewed rows"]

    body += ["", "## Policy results", ""]
    if policy_results is None:
        body.append("No policy check was run for this export.")
    elif not policy_results:
        body.append("No policies apply to this project.")
    else:
        for result in policy_results:
            if isinstance(result, Mapping):
                name = result.get("rule") or result.get("name") or "policy"
                ok = result.get("passed", result.get("ok"))
                status = "passed" if ok is True else "FAILED" if ok is False else "see details"
                if ok is False and result.get("overridden_by"):
                    status = f"failed, overridden by {_md(result['overridden_by'])}"
                detail = result.get("message") or result.get("detail") or ""
                body.append(f"- {_md(name)}: {status}" + (f" ({_md(detail)})" if detail else ""))
            else:
                body.append(f"- {_md(result)}")
        body += ["", "```json", json.dumps(policy_results, indent=2, sort_keys=True, default=str).replace("```", "'''"), "```"]

    if rows.excluded:
        body += ["", "## Left out", ""]
        body += [f"- {n} signal row(s): {reason}" for reason, n in sorted(rows.excluded.items())]
    if rows.notes:
        body += ["", "## Notes", ""] + [f"- {_md(n)}" for n in rows.notes]
    body += ["", "## Snapshot manifest", "", "```json",
             json.dumps(snapshot.manifest, indent=2, sort_keys=True, default=str).replace("```", "'''"), "```", ""]
    return "\n".join(yaml + body)

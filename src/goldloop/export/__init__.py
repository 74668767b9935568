"""Exports that trainers take unchanged: a snapshot (or its signals) in TRL's, Hugging Face's or
OpenAI's format, with a dataset card.

==================  =============================================  ======================
format              columns                                        for
==================  =============================================  ======================
``classification``  text, label                                    a classifier
``sft``             prompt, completion                             ``trl.SFTTrainer``
``sft-messages``    messages (user, assistant)                     ``trl.SFTTrainer``
``dpo``             prompt, chosen, rejected                       ``trl.DPOTrainer``
``kto``             prompt, completion, label (bool)               ``trl.KTOTrainer``
``reward``          [prompt,] chosen, rejected                     ``trl.RewardTrainer``
``openai``          messages (system, user, assistant = label)     OpenAI fine-tuning
``openai-sft``      messages (user, assistant)                     OpenAI fine-tuning
==================  =============================================  ======================

Every row keeps its record id, origin and the reviewer action behind it in a ``metadata``
struct column (for the OpenAI formats, in a line-aligned ``metadata.jsonl`` beside the
training file, which holds only what OpenAI accepts). Storage: JSON Lines (default),
Parquet, or a ``datasets`` folder (``save_to_disk``). The folder's README.md is a Hugging
Face dataset card, so ``datasets.load_dataset(folder)`` loads it.

>>> sorted(STORAGES)
['hf', 'jsonl', 'parquet']
"""

from ..snapshot import resolve_snapshot
from ._export import EXPORT_FORMAT_VERSION, EXPORT_MANIFEST, ExportResult, export_snapshot
from ._rows import FORMATS, METADATA_FIELDS, ExportRow, ExportRows, build_rows
from ._write import STORAGES

__all__ = ["EXPORT_FORMAT_VERSION", "EXPORT_MANIFEST", "ExportResult", "ExportRow", "ExportRows", "FORMATS", "METADATA_FIELDS",
           "STORAGES", "build_rows", "export_snapshot", "resolve_snapshot"]

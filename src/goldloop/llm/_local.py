"""The model a `generate` project trains, as an :class:`LLM`: a transformers causal language model
(a Hugging Face id or folder, a GGUF file, or the packaged ``smollm2``) with an optional LoRA
adapter, run in this process. It lets the model being fine-tuned draft the responses a reviewer
then accepts or fixes (``[suggest] responder = "model"``).

- **Requests.** Chat requests go through the tokenizer's chat template with the assistant turn
  opened; completion requests are encoded as they are. Requests with the same decoding settings
  are run ``batch_size`` at a time, left-padded.
- **Decoding.** ``temperature`` 0 is greedy; above it, sampling with ``top_p``, seeded by the
  first request of each batch (the same requests in the same order give the same texts). A
  ``repeat_penalty`` control becomes transformers' ``repetition_penalty``; ``no_repeat_ngram``
  (default 4) forbids repeating an n-gram of that many tokens, as small models' greedy outputs
  otherwise loop. Generation ends at the end-of-turn token, ``max_tokens``, or a stop string
  (cut off, as the HTTP backends do).
- **Identity.** :attr:`model` names the base model and a digest of the adapter's files, so a
  retrained adapter gives new request keys and its texts say which weights wrote them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import StageError
from ._base import LLM, CompletionRequest, CompletionResult
from ._flow import Account


def adapter_digest(adapter: str | Path) -> str:
    """A short digest of a LoRA adapter folder's weights and settings (12 hex digits)."""
    folder = Path(adapter)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("adapter_"))
    if not files:
        raise StageError(f"{folder}: no LoRA adapter here (adapter_config.json and adapter_model.* are missing)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class LocalLM(LLM):
    """A transformers causal LM (+ LoRA adapter) answering :class:`CompletionRequest` s in-process."""

    backend = "local"

    def __init__(self, base_model: str, adapter: str | Path | None = None, *, batch_size: int = 8,
                 no_repeat_ngram: int = 4, threads: int = 0) -> None:
        self.base_model, self.adapter = base_model, (Path(adapter) if adapter is not None else None)
        self.model = base_model + (f"+adapter:{adapter_digest(self.adapter)}" if self.adapter is not None else "")
        self.batch_size, self.no_repeat_ngram, self.threads = max(1, batch_size), max(0, no_repeat_ngram), threads
        self.account = Account()
        self._loaded: tuple[Any, Any] | None = None
        self._stopping = False

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch

            from ..evaluate_pairs import load_adapter
            from ..train._causal_lm import load_causal_lm

            if self.threads:
                torch.set_num_threads(self.threads)
            if self.adapter is not None:
                model, tokenizer = load_adapter(self.base_model, self.adapter)
            else:
                model, tokenizer = load_causal_lm(self.base_model)
                model = model.to("cuda") if torch.cuda.is_available() else model
            model.eval()
            self._loaded = (model, tokenizer)
        return self._loaded

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._loaded = None

    @staticmethod
    def _ids(tokenizer: Any, req: CompletionRequest) -> list[int]:
        from ..evaluate_pairs import chat_prompt_ids

        if req.messages is not None:
            return chat_prompt_ids(tokenizer, req.messages)
        return tokenizer(req.prompt or "", add_special_tokens=False).input_ids

    @staticmethod
    def _settings(req: CompletionRequest) -> tuple:
        controls = dict(req.controls)
        return (req.max_tokens, round(req.temperature, 6), round(req.top_p, 6),
                float(controls.get("repeat_penalty", 1.0)))

    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        self._stopping = False
        self.account.requested += len(requests)
        groups: dict[tuple, list[CompletionRequest]] = {}
        for req in requests:
            groups.setdefault(self._settings(req), []).append(req)
        done = 0
        for settings, reqs in groups.items():
            for start in range(0, len(reqs), self.batch_size):
                if self._stopping:
                    self.account.not_sent += len(requests) - done
                    return
                chunk = reqs[start:start + self.batch_size]
                done += len(chunk)
                self.account.sent += len(chunk)
                yield from self._run(chunk, settings)

    def _run(self, chunk: list[CompletionRequest], settings: tuple) -> Iterator[CompletionResult]:
        import torch

        from ..evaluate_pairs import left_padded

        max_tokens, temperature, top_p, repeat_penalty = settings
        started = time.monotonic()
        try:
            model, tokenizer = self._load()
            prompts = [self._ids(tokenizer, r) for r in chunk]
            pad = tokenizer.pad_token_id
            ids, mask, width = left_padded(prompts, pad, next(model.parameters()).device)
            extra: dict[str, Any] = {"do_sample": temperature > 0}
            if temperature > 0:
                extra |= {"temperature": temperature, "top_p": top_p}
                torch.manual_seed(chunk[0].seed if chunk[0].seed is not None else 0)
            if self.no_repeat_ngram:
                extra["no_repeat_ngram_size"] = self.no_repeat_ngram
            if repeat_penalty != 1.0:
                extra["repetition_penalty"] = repeat_penalty
            with torch.no_grad():
                made = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, **extra)
        except StageError:
            raise
        except Exception as exc:                        # a failed batch fails its requests, not the stage
            self.account.failed += len(chunk)
            self.account.failure_causes[type(exc).__name__] += len(chunk)
            for req in chunk:
                yield CompletionResult(req.key, None, error=f"{type(exc).__name__}: {exc}")
            return
        seconds = (time.monotonic() - started) / len(chunk)
        for req, prompt, row in zip(chunk, prompts, made):
            new = [int(t) for t in row[width:]]
            ended = tokenizer.eos_token_id in new
            if ended:
                new = new[:new.index(tokenizer.eos_token_id)]
            new = [t for t in new if t != pad]
            text, stopped = _cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), req.stop)
            self.account.succeeded += 1
            self.account.tokens_in += len(prompt)
            self.account.tokens_out += len(new)
            yield CompletionResult(req.key, text, tokens_in=len(prompt), tokens_out=len(new), seconds=seconds,
                                   finish_reason="stop" if ended or stopped else "length")

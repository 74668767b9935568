"""Where the heavy stages run: in this process (``[executor] backend = "local"``) or on a Ray
cluster (``"ray"``, with goldloop's ``ray`` extra).

Embedding can run on Ray as well (``[executor] embed_actors``): each actor holds its own copy
of the ``[embed]`` model (on a GPU with ``embed_gpus``), and the vectors come back in order to
the store's cache.

Generation is the stage that scales out first: its cost is waiting on endpoints. With Ray,
:func:`generation_llm` starts one actor per endpoint of ``[llm] base_url`` and ``base_urls``
(``[executor] actors_per_endpoint`` each); every actor runs goldloop's own OpenAI-compatible
client against its endpoint, with its own concurrency, retries, circuit breaker and share of
the rate limits, and streams each reply back as it arrives. This process plans the requests
and stores each reply as before (:func:`goldloop.generate.generate`), so request keys,
records, provenance and resuming after a kill are those of the local path: the backend
recorded in provenance is ``openai``, whichever machine sent the request.

An actor streams with backpressure: it holds back a reply until this process has taken the
one before, so a lost driver loses no more paid replies than the local path would.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ._config_executor import ExecutorConfig
from .config import EmbedConfig, LLMConfig
from .embed import Embedder
from .errors import ConfigError, StageError
from .llm import LLM, CompletionRequest, CompletionResult, OpenAICompatibleLLM
from .llm._spread import SpreadLLM

__all__ = ["RayEmbedder", "RayEndpoint", "endpoints", "generation_llm", "ray_session"]


def endpoints(cfg: LLMConfig) -> list[str]:
    """Every endpoint requests go to: ``base_url`` (or GOLDLOOP_LLM_BASE_URL), then ``base_urls``."""
    first = os.environ.get("GOLDLOOP_LLM_BASE_URL") or cfg.base_url
    urls = [u for u in [first, *cfg.base_urls] if u]
    if len(set(urls)) != len(urls):
        raise ConfigError("goldloop.toml: [llm] base_urls repeats an endpoint (base_url included); list each once")
    return urls


def _part(limit: int, share: int) -> int:
    """One of ``share`` clients' part of a per-minute limit (0: none); never 0 for a set limit,
    which would lift it."""
    return max(1, limit // share) if limit else 0


def _client(cfg: LLMConfig, url: str, share: int = 1) -> OpenAICompatibleLLM:
    """goldloop's client for one endpoint; ``share``: how many clients split its rate limits."""
    return OpenAICompatibleLLM(url, cfg.model, api_key=os.environ.get(cfg.api_key_env, ""),
                               concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                               backoff_s=cfg.backoff_s, max_backoff_s=cfg.max_backoff_s,
                               requests_per_minute=_part(cfg.requests_per_minute, share),
                               tokens_per_minute=_part(cfg.tokens_per_minute, share),
                               breaker_failures=cfg.breaker_failures, breaker_cooldown_s=cfg.breaker_cooldown_s,
                               breaker_give_up_s=cfg.breaker_give_up_s, http_client=cfg.http_client)


def generation_llm(cfg: LLMConfig, executor: ExecutorConfig) -> LLM:
    """The `openai` backend over every endpoint: in this process, or on Ray."""
    urls = endpoints(cfg)
    first = _client(cfg, urls[0] if urls else "")      # refuses a missing base URL or model name, here
    if executor.backend == "local":
        if len(urls) == 1:
            return first
        return SpreadLLM([first, *(_client(cfg, u) for u in urls[1:])], "openai", cfg.model)
    first.close()
    ray_session(executor)
    k = executor.actors_per_endpoint
    parts = [RayEndpoint(asdict(cfg), url, k) for url in urls for _ in range(k)]
    return SpreadLLM(parts, "openai", cfg.model)


def ray_session(executor: ExecutorConfig) -> Any:
    """Connect to (or start) the Ray cluster ``[executor]`` names, once per process; the ray module."""
    try:
        import ray
    except ImportError as exc:
        raise StageError("[executor] backend = \"ray\" needs Ray: install goldloop with its `ray` extra "
                         "(pip install \"goldloop[ray]\"), or set backend = \"local\"") from exc
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if executor.address:
            kwargs["address"] = executor.address
        elif executor.num_cpus:
            kwargs["num_cpus"] = executor.num_cpus
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {executor.address!r}" if executor.address else "a private Ray instance"
            raise StageError(f"[executor]: could not reach {where}: {exc}") from exc
    return ray


def actor_pool(ray: Any, wanted: int, inputs: int) -> Any:
    """A Ray Data actor pool of ``wanted`` one-CPU actors (0: one per CPU of the cluster) for
    ``inputs`` items, all started at once where the cluster has their CPUs and there is an item
    for each: a pool that starts with one actor and grows on backlog leaves the others idle
    through a short stage."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, min(wanted or cpus, inputs))
    return ray.data.ActorPoolStrategy(min_size=max(1, min(size, cpus)), max_size=size)


def map_shards(actor: type, args: tuple[Any, ...], paths: Sequence[str], wanted: int) -> Iterator[dict[str, Any]]:
    """The rows ``actor(*args)`` returns for each shard (Parquet file) of ``paths``, on a pool of up to
    ``wanted`` Ray Data actors (see :func:`actor_pool`) that Ray restarts and retries when a worker
    dies. Each actor is handed rows ``shard`` (the shard's number) and ``path`` and reads its shards
    itself: the dataset is the list, made here, so no read or file-listing task waits for a CPU the
    actors hold (one one-CPU worker would forever)."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ds = ray.data.from_items([{"shard": i, "path": p} for i, p in enumerate(paths)]).map_batches(
        actor, fn_constructor_args=args, batch_size=1, batch_format="pyarrow", num_cpus=1,
        compute=actor_pool(ray, wanted, len(paths)), max_restarts=-1, max_task_retries=-1)
    return ds.iter_rows()


@contextmanager
def stage_dir(executor: ExecutorConfig, prefix: str) -> Iterator[Path]:
    """A fresh folder for a Ray stage's shards under ``[executor] shared_dir`` (a temporary folder
    of this machine when empty), removed with everything in it when the stage ends."""
    shared = executor.shared_dir or None
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=shared) as tmp:
        yield Path(tmp)


_ACTOR: Any = None


def _actor_class() -> Any:
    """The Ray actor class, defined once Ray is imported (goldloop itself never needs Ray)."""
    global _ACTOR
    if _ACTOR is None:
        import ray

        @ray.remote(num_cpus=0.5, max_concurrency=2)
        class EndpointActor:
            """One endpoint's client, in a Ray worker."""

            def __init__(self, cfg: dict[str, Any], url: str, share: int) -> None:
                self.llm = _client(LLMConfig(**cfg), url, share)

            def complete(self, requests: list[CompletionRequest]) -> Iterator[CompletionResult]:
                yield from self.llm.complete(requests)

            def stop(self) -> None:
                self.llm.stop()

            def account(self) -> dict[str, Any]:
                return self.llm.account.to_json()

            def close(self) -> None:
                self.llm.close()

        _ACTOR = EndpointActor
    return _ACTOR


class RayEndpoint(LLM):
    """A :class:`SpreadLLM` part whose client runs in a Ray actor. What it asked for and got back
    is counted here, so the account survives the actor; what only the client knows (attempts,
    retries, the breaker) comes from the actor while it lives."""

    backend = "openai"

    def __init__(self, cfg: dict[str, Any], url: str, share: int = 1) -> None:
        from .llm._flow import Account

        self.url, self.model = url, cfg["model"]
        self.actor = _actor_class().remote(cfg, url, share)
        self._seen = Account()

    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        import ray

        self._seen.requested += len(requests)
        stream = self.actor.complete.options(num_returns="streaming",
                                             _generator_backpressure_num_objects=1).remote(list(requests))
        for ref in stream:
            result: CompletionResult = ray.get(ref)
            if result.ok:
                self._seen.succeeded += 1
            else:
                self._seen.failed += 1
                self._seen.failure_causes[(result.error or "failed").split(":")[0]] += 1
            self._seen.tokens_in += result.tokens_in
            self._seen.tokens_out += result.tokens_out
            yield result

    def stop(self) -> None:
        self.actor.stop.remote()

    @property
    def account(self) -> Any:
        import ray

        from .llm._flow import Account

        acc = Account(requested=self._seen.requested, succeeded=self._seen.succeeded, failed=self._seen.failed,
                      tokens_in=self._seen.tokens_in, tokens_out=self._seen.tokens_out)
        acc.failure_causes.update(self._seen.failure_causes)
        try:
            remote = ray.get(self.actor.account.remote(), timeout=10)
        except Exception:                    # the actor is gone: what it alone knew is gone with it
            return acc
        acc.sent, acc.retried, acc.retries = remote["sent"], remote["retried"], remote["retries"]
        acc.not_sent, acc.breaker_trips = remote["not_sent"], remote["breaker_trips"]
        acc.retry_causes.update(remote["retry_causes"])
        return acc

    def close(self) -> None:
        import ray

        try:
            ray.get(self.actor.close.remote(), timeout=30)
        except Exception:                    # already gone
            pass
        finally:
            ray.kill(self.actor)


_EMBED_ACTOR: Any = None


def _embed_actor_class() -> Any:
    global _EMBED_ACTOR
    if _EMBED_ACTOR is None:
        import ray

        @ray.remote
        class EmbedActor:
            """One copy of the ``[embed]`` model, in a Ray worker."""

            def __init__(self, cfg: dict[str, Any], device: str) -> None:
                from .config import EmbedConfig
                from .embed import HashingEmbedder, MiniLMEmbedder

                c = EmbedConfig(**cfg)
                self.embedder = (HashingEmbedder() if c.backend == "fake" else
                                 MiniLMEmbedder(batch_size=c.batch_size, max_tokens=c.max_tokens, device=device))

            def identity(self) -> tuple[str, int]:
                return self.embedder.name, self.embedder.dim

            def embed(self, texts: list[str]) -> Any:
                return self.embedder.embed(texts)

        _EMBED_ACTOR = EmbedActor
    return _EMBED_ACTOR


class RayEmbedder(Embedder):
    """The ``[embed]`` model on ``[executor] embed_actors`` Ray actors: a call's texts are cut into
    one contiguous part per actor and the vectors put back in order, so the result is the one
    the model gives in this process (the store's cache sits in front, as for a local model)."""

    def __init__(self, cfg: EmbedConfig, executor: ExecutorConfig) -> None:
        ray = ray_session(executor)
        options: dict[str, Any] = {"num_cpus": 1}
        if executor.embed_gpus:
            options["num_gpus"] = executor.embed_gpus
        device = "cuda" if executor.embed_gpus else "cpu"
        actor = _embed_actor_class()
        self.actors = [actor.options(**options).remote(asdict(cfg), device) for _ in range(executor.embed_actors)]
        self.name, self.dim = ray.get(self.actors[0].identity.remote())
        self.chunk = 256 * len(self.actors)          # CachedEmbedder hands over this many texts a call

    def embed(self, texts: list[str]) -> np.ndarray:
        import ray

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        n = len(self.actors)
        size = -(-len(texts) // n)
        parts = [texts[i:i + size] for i in range(0, len(texts), size)]
        refs = [actor.embed.remote(part) for actor, part in zip(self.actors, parts)]
        return np.concatenate([np.asarray(v, dtype=np.float32) for v in ray.get(refs)])

"""Generation spread over several endpoints, in this process and on a local Ray cluster: the same
request keys and records as one endpoint, every request answered once, nothing lost to a dead worker."""

from __future__ import annotations

import threading
import time

import pytest

from goldloop.config import Config
from goldloop.errors import ConfigError
from goldloop.generate import generate
from goldloop.llm import LLM, CompletionRequest, CompletionResult, FakeLLM, make_llm
from goldloop.llm._spread import SpreadLLM
from goldloop.llm.fake_server import FakeOpenAIServer


def _requests(n: int) -> list[CompletionRequest]:
    return [CompletionRequest(key=f"key-{i:04d}", prompt=f"Post 1: item {i}\nPost 2:", max_tokens=16) for i in range(n)]


class Eager(LLM):
    """A part that answers at once and counts how far ahead of its caller it was asked to go."""

    backend, model = "fake", "eager"

    def __init__(self) -> None:
        self.pulled = 0

    def complete(self, requests):
        for req in requests:
            self.pulled += 1
            yield CompletionResult(req.key, "ok")


class Broken(LLM):
    backend, model = "fake", "broken"

    def complete(self, requests):
        yield CompletionResult(requests[0].key, "first")
        raise ConnectionError("worker process died")


def test_a_spread_answers_every_request_once_and_never_runs_ahead_of_its_caller() -> None:
    parts = [Eager(), Eager(), Eager()]
    spread = SpreadLLM(parts, "fake", "eager")
    seen = []
    for result in spread.complete(_requests(30)):
        seen.append(result.key)
        # the caller has this result and has saved none of the ones it has not seen: each part
        # may have handed over one result more than the caller has come back from
        assert sum(p.pulled for p in parts) <= len(seen) + len(parts)
    assert sorted(seen) == [r.key for r in _requests(30)]
    assert [p.pulled for p in parts] == [10, 10, 10]                       # spread evenly


def test_a_broken_part_fails_its_unanswered_requests_and_the_rest_go_on() -> None:
    spread = SpreadLLM([FakeLLM(), Broken()], "fake", "mixed")
    results = {r.key: r for r in spread.complete(_requests(10))}
    assert len(results) == 10
    failed = [r for r in results.values() if not r.ok]
    assert len(failed) == 4 and all(r.error.startswith("worker lost: ConnectionError: worker process died")
                                    for r in failed)


def test_a_caller_that_stops_early_leaves_no_thread_behind() -> None:
    spread = SpreadLLM([Eager(), Eager()], "fake", "eager")
    before = threading.active_count()
    for i, _ in enumerate(spread.complete(_requests(100))):
        if i == 3:
            break
    time.sleep(0.2)
    assert threading.active_count() <= before


def _openai_config(*urls: str) -> Config:
    cfg = Config()
    cfg.llm.backend, cfg.llm.model, cfg.llm.max_retries = "openai", "fake", 0
    cfg.llm.base_url, cfg.llm.base_urls = urls[0], list(urls[1:])
    cfg.generate.per_label = 6
    return cfg


def test_base_urls_need_the_openai_backend_and_ray_needs_endpoints() -> None:
    cfg = Config()
    cfg.llm.backend, cfg.llm.base_urls = "fake", ["http://127.0.0.1:9/v1"]
    with pytest.raises(ConfigError, match="base_urls lists endpoints; it needs .llm. backend = \"openai\""):
        make_llm(cfg.llm, cfg.executor)
    cfg.llm.base_urls, cfg.executor.backend = [], "ray"
    with pytest.raises(ConfigError, match="needs .llm. backend = \"openai\", not 'fake'"):
        make_llm(cfg.llm, cfg.executor)
    cfg = _openai_config("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="repeats an endpoint"):
        make_llm(cfg.llm, cfg.executor)


def test_an_endpoints_rate_limits_are_split_between_its_clients_and_never_lifted() -> None:
    from goldloop.executor import _client

    cfg = _openai_config("http://127.0.0.1:9/v1")
    cfg.llm.requests_per_minute, cfg.llm.tokens_per_minute = 2, 90_000
    three = _client(cfg.llm, cfg.llm.base_url, 3)
    assert (three.requests_per_minute, three.tokens_per_minute) == (1, 30_000)
    cfg.llm.requests_per_minute = 0
    assert _client(cfg.llm, cfg.llm.base_url, 3).requests_per_minute == 0      # no limit stays no limit


def _round(project, llm) -> dict[str, tuple[str, str, str]]:
    path, cfg, store = project
    number = store.open_round()
    generate(store, cfg, llm, number, show_progress=False)
    return {r.id: (r.text, r.label, r.provenance.request_key) for r in store.records(origin="synthetic", round=number)}


def test_two_endpoints_in_process_give_the_records_of_one(project, tmp_path) -> None:
    from goldloop.ingest import ingest_file
    from goldloop.store import open_store

    from .conftest import make_rows, write_csv

    with FakeOpenAIServer(latency_s=0.01) as a, FakeOpenAIServer(latency_s=0.01) as b:
        one = _openai_config(a.url)
        single = make_llm(one.llm, one.executor)
        path, _, store = project
        expected = _round((path, one, store), single)
        single.close()
        other = tmp_path / "two"
        other.mkdir()
        two = _openai_config(a.url, b.url)
        store2 = open_store(other)
        ingest_file(store2, two, write_csv(other / "gold.csv", make_rows()))
        spread = make_llm(two.llm, two.executor)
        assert isinstance(spread, SpreadLLM)
        got = _round((other, two, store2), spread)
        assert got == expected and len(got) == 18
        assert b.served > 0 and spread.account.succeeded == 18
        spread.close()
        store2.close()


def test_on_ray_the_records_and_keys_are_those_of_the_local_path(project, tmp_path, local_ray) -> None:
    from goldloop.executor import RayEndpoint
    from goldloop.ingest import ingest_file
    from goldloop.store import open_store

    from .conftest import make_rows, write_csv

    with FakeOpenAIServer(latency_s=0.01) as a, FakeOpenAIServer(latency_s=0.01) as b:
        local = _openai_config(a.url, b.url)
        path, _, store = project
        expected = _round((path, local, store), make_llm(local.llm, local.executor))
        on_ray = _openai_config(a.url, b.url)
        on_ray.executor.backend, on_ray.executor.actors_per_endpoint = "ray", 2
        other = tmp_path / "ray"
        other.mkdir()
        store2 = open_store(other)
        ingest_file(store2, on_ray, write_csv(other / "gold.csv", make_rows()))
        llm = make_llm(on_ray.llm, on_ray.executor)
        assert len(llm.parts) == 4 and all(isinstance(p, RayEndpoint) for p in llm.parts)
        got = _round((other, on_ray, store2), llm)
        assert got == expected
        assert {r.provenance.backend for r in store2.records(origin="synthetic")} == {"openai"}
        assert llm.account.succeeded == 18
        llm.close()
        store2.close()


def test_a_killed_ray_worker_loses_nothing_and_a_rerun_sends_only_what_failed(project, local_ray) -> None:
    path, cfg, store = project
    with FakeOpenAIServer(latency_s=0.05) as a, FakeOpenAIServer(latency_s=1.5) as b:
        on_ray = _openai_config(a.url, b.url)
        on_ray.executor.backend = "ray"
        llm = make_llm(on_ray.llm, on_ray.executor)
        victim = llm.parts[1].actor                             # b's: its replies take 1.5 s, it dies first
        number = store.open_round()
        killed = threading.Timer(0.5, lambda: local_ray.kill(victim))
        killed.start()
        report = generate(store, on_ray, llm, number, show_progress=False)
        killed.join()
        assert report.succeeded + report.failed == 18 and report.failed > 0
        assert set(report.errors) == {"worker lost"} and llm.account.failure_causes["worker lost"] == report.failed
        stored = len(store.records(origin="synthetic", round=number))
        assert stored == report.succeeded
        again = make_llm(on_ray.llm, on_ray.executor)
        rerun = generate(store, on_ray, again, number, show_progress=False)
        assert rerun.already_done == report.succeeded and rerun.succeeded == report.failed
        assert len(store.records(origin="synthetic", round=number)) == 18          # none twice
        again.close()


def test_embedding_on_ray_actors_gives_the_local_vectors_in_order(project, local_ray) -> None:
    import numpy as np

    from goldloop.embed import CachedEmbedder, HashingEmbedder, make_embedder
    from goldloop.executor import RayEmbedder
    from goldloop.records import text_hash

    _, cfg, store = project
    cfg.executor.backend, cfg.executor.embed_actors = "ray", 2
    remote = make_embedder(cfg.embed, cfg.executor)
    assert isinstance(remote, RayEmbedder) and len(remote.actors) == 2
    texts = [r.text for r in store.records(origin="gold")] + ["", "one more"]
    local = HashingEmbedder()
    assert (remote.name, remote.dim) == (local.name, local.dim)
    assert np.array_equal(remote.embed(texts), local.embed(texts))
    assert remote.embed([]).shape == (0, local.dim)
    cached = CachedEmbedder(remote, store)                 # the cache in front, as for a local model
    assert np.array_equal(cached.embed(texts[:7]), local.embed(texts[:7]))
    assert len(store.get_embeddings(local.name, [text_hash(t) for t in texts[:7]])) == 7
    assert remote.chunk == 512

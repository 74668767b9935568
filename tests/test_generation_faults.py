"""A generation run against a faulty endpoint ends with every request accounted for, and a run
killed with SIGKILL at random points resumes to exactly-once results."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from goldloop.generate import generate, plan_requests
from goldloop.llm import OpenAICompatibleLLM
from goldloop.llm.fake_server import FakeOpenAIServer


# `goldloop generate` on a store that takes ``save_s`` seconds to save each reply (a slow disk).
SLOW_SAVES = """
import sys, time
from goldloop.cli import main
from goldloop.store import SQLiteStore

save = SQLiteStore.add_generation

def slow(self, row, records):
    time.sleep({save_s})
    save(self, row, records)

SQLiteStore.add_generation = slow
main(sys.argv[1:], prog_name="goldloop")
"""


def _generate_command(path, cfg, server, save_s: float = 0.0) -> list[str]:
    """Point the project at ``server`` and give the `goldloop generate` command line for it."""
    cfg.llm.backend = "openai"
    cfg.llm.base_url = server.url
    cfg.llm.model = "fake"
    cfg.save(path)
    run = ["-c", SLOW_SAVES.format(save_s=save_s)] if save_s else ["-m", "goldloop.cli"]
    return [sys.executable, *run, "-q", "-p", str(path), "generate"]


def _wait_while(busy, proc, timeout_s: float = 60) -> None:
    """Poll until ``busy()`` is false, ``proc`` has exited or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while busy() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.parametrize("http_client", ["native", "aiohttp"])
def test_faults_on_30_percent_of_requests_are_all_accounted_for(project, http_client):
    _, cfg, store = project
    cfg.generate.per_label = 40                      # 120 requests
    with FakeOpenAIServer(latency_s=0.01, fault_rate=0.3, stall_s=2.0, seed=3) as server:
        llm = OpenAICompatibleLLM(server.url, "fake", concurrency=16, timeout_s=0.5, max_retries=2,
                                  backoff_s=0.01, max_backoff_s=0.05, breaker_failures=50,
                                  http_client=http_client)
        report = generate(store, cfg, llm, round=1, show_progress=False)
        llm.close()
        outcomes = Counter(entry.outcome for entry in server.log)
    assert set(outcomes) == {"ok", "429", "500", "timeout", "invalid_json", "disconnect"}
    acc = llm.account
    assert acc.requested == report.planned == 120
    assert acc.succeeded + acc.failed == 120 and acc.retried > 0
    assert report.succeeded == acc.succeeded and report.failed == acc.failed
    rows = store.generations(1)
    assert len(rows) == 120
    for row in rows:
        assert row.status in ("ok", "failed")
        assert (row.status == "ok") == (row.error == "")
    assert sum(acc.failure_causes.values()) == acc.failed
    assert len(store.records(origin="synthetic")) == acc.succeeded
    # every request the endpoint received is in the account, resends on a new connection included
    received = sum(server.attempts.values())
    assert acc.succeeded + acc.failed + acc.retries == received, acc.to_json()
    assert report.account["sent"] == received
    # a second run retries exactly the failed ones
    with FakeOpenAIServer(latency_s=0.0) as server:
        llm = OpenAICompatibleLLM(server.url, "fake", concurrency=16)
        again = generate(store, cfg, llm, round=1, show_progress=False)
        llm.close()
        assert len(server.log) == acc.failed
    assert again.already_done == acc.succeeded and again.succeeded == acc.failed
    assert len(store.records(origin="synthetic")) == 120


def test_replies_answered_but_not_saved_never_exceed_the_window(project, monkeypatch):
    """However slow the store, a new request goes out only when a saved reply frees its slot."""
    _, cfg, store = project
    cfg.generate.per_label = 10                      # 30 requests, answered at once
    saved = []
    ahead = []
    save = store.add_generation

    def slow_save(row, records):
        time.sleep(0.02)
        ahead.append(len(server.attempts) - len(saved))
        save(row, records)
        saved.append(row.request_key)

    monkeypatch.setattr(store, "add_generation", slow_save)
    with FakeOpenAIServer() as server:
        llm = OpenAICompatibleLLM(server.url, "fake", concurrency=4)
        report = generate(store, cfg, llm, round=1, show_progress=False)
        llm.close()
    assert report.succeeded == len(saved) == 30
    assert max(ahead) <= 4, f"{max(ahead)} replies answered but not saved, with a window of 4"


@pytest.mark.parametrize("latency_s, save_s", [(0.1, 0.0), (0.01, 0.02)], ids=["fast-store", "slow-store"])
def test_sigkill_at_random_points_gives_exactly_once_results(project, latency_s, save_s):
    """180 requests, 8 at a time; the slow store saves slower than the endpoint answers."""
    path, cfg, store = project
    cfg.generate.per_label = 60
    cfg.llm.concurrency = 8
    with FakeOpenAIServer(latency_s=latency_s) as server:
        cmd = _generate_command(path, cfg, server, save_s)
        client = OpenAICompatibleLLM(server.url, cfg.llm.model)
        planned = {p.request.key for p in plan_requests(store, cfg, client, 1)}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        rng = random.Random(11)
        kills = 0
        for _ in range(4):
            before, seen = len(server.log), dict(server.attempts)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_while(lambda: len(server.log) == before, proc)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            # replies to this run's requests (one to the run killed before may be logged late)
            sent = {key for key, n in dict(server.attempts).items() if n > seen.get(key, 0)}
            answered = {entry.key for entry in server.log[before:] if entry.outcome == "ok"} & sent
            lost = answered - {row.request_key for row in store.generations(1)}
            assert len(lost) <= cfg.llm.concurrency, f"{len(lost)} replies sent but not saved at a kill -9"
        stored_mid = len(store.generations(1))
        assert 0 < stored_mid < len(planned) and kills >= 3
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = list(server.log)

    rows = store.generations(1)
    assert {r.request_key for r in rows} == planned and len(rows) == len(planned)
    assert all(r.status == "ok" for r in rows)
    served = {}
    for entry in log:
        assert entry.key in planned, "the endpoint saw a request that was never planned"
        served.setdefault(entry.key, set()).add(entry.text)
    assert set(served) == planned
    for row in rows:
        assert served[row.request_key] == {row.reply}, "a stored reply differs from what the endpoint sent"
    synthetic = store.records(origin="synthetic")
    assert len(synthetic) == len(planned) == len({r.provenance.request_key for r in synthetic})
    # Replies lost in flight at a kill are sent again: at most one window per kill.
    resent = sum(1 for key in served if sum(e.key == key for e in log) > 1)
    assert resent <= kills * cfg.llm.concurrency


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_replies_in_flight_and_nothing_is_sent_twice(project, sig):
    """Ctrl-C or SIGTERM: requests already sent are waited for and committed (they are paid for),
    nothing new is sent, the exit code is 130, and the next run sends only what was never sent."""
    path, cfg, store = project
    cfg.generate.per_label = 40                      # 120 requests, 8 at a time, 0.5 s each
    cfg.llm.concurrency = 8
    with FakeOpenAIServer(latency_s=0.5) as server:
        cmd = _generate_command(path, cfg, server)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_while(lambda: len(server.attempts) < 12, proc)    # the first window answered, the second in flight
        proc.send_signal(sig)
        sent_at = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent_at
        received = dict(server.attempts)
        assert proc.returncode == 130, stderr
        assert "stopped:" in stderr and "Run the same command again" in stderr
        assert took < 5, f"stopping took {took:.1f} s: it should wait only for the replies in flight"
        stored = {row.request_key for row in store.generations(1)}
        assert stored == set(received), "every request the endpoint received has its reply saved"
        assert 8 <= len(stored) < 120
        _, _, event = store.events("generate.stopped")[-1]
        assert event["signal"] == sig.name and event["not_sent"] == 120 - len(stored)

        server.latency_s = 0.02                      # the rest quickly
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert len(store.generations(1)) == 120
        assert set(server.attempts.values()) == {1}, "no request was sent twice"


def test_a_second_signal_abandons_the_replies_in_flight(project):
    path, cfg, store = project
    cfg.generate.per_label = 40
    cfg.llm.concurrency = 8
    with FakeOpenAIServer(latency_s=2.0) as server:
        cmd = _generate_command(path, cfg, server)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_while(lambda: len(server.attempts) < 8, proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        sent_at = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - sent_at < 1.5, "a second Ctrl-C must not wait for the 2 s replies"
        assert proc.returncode != 0
        assert store.generations(1) == []
        server.latency_s = 0.02
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert len(store.generations(1)) == 120


def test_structured_chat_output_is_validated_and_parsed(project):
    from .test_llm_backends import ScriptedServer

    _, cfg, store = project
    cfg.llm.mode = "chat"
    cfg.llm.structured_output = True
    cfg.generate.per_label = 2

    def script(body, attempt):
        assert body["response_format"]["json_schema"]["schema"]["required"] == ["text"]
        user = body["messages"][1]["content"]
        if "billing" in user.split("\n")[0] and attempt == 1:
            return '{"draft": "wrong shape"}'           # fails validation, retried
        return json.dumps({"text": "a structured draft about the account please help"})

    with ScriptedServer(script) as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4, backoff_s=0.001)
        report = generate(store, cfg, llm, round=1, show_progress=False)
        llm.close()
    assert report.succeeded == 6 and llm.account.retry_causes["schema mismatch"] == 2
    texts = {r.text for r in store.records(origin="synthetic")}
    assert texts == {"a structured draft about the account please help"}
    assert all(r.provenance.params["json_schema"]["required"] == ["text"]
               for r in store.records(origin="synthetic"))

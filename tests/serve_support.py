"""Shared set-up for the review server's tests: a filtered round, users, logins, a live server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goldloop.config import Config
from goldloop.embed import CachedEmbedder, HashingEmbedder
from goldloop.filters import run_filters
from goldloop.generate import generate
from goldloop.llm import FakeLLM
from goldloop.store import Store

PASSWORD = "correct horse battery"
USERS = {"ann": "reviewer", "bob": "reviewer", "cat": "approver", "dan": "admin"}


def filtered_round(project: tuple[Path, Config, Store], per_label: int = 4, **serve: object) -> tuple[Path, Config, Store]:
    """Round 1 generated with the fake LLM and filtered; ``serve`` overrides [serve] settings."""
    path, cfg, store = project
    cfg.generate.per_label = per_label
    cfg.filter.label_consistency = "off"
    cfg.filter.min_distinct_bigrams = 0.0
    cfg.filter.near_dup_threshold = 1.0         # the fake model's short drafts share most words: only exact repeats
    for key, value in serve.items():
        setattr(cfg.serve, key, value)
    cfg.save(path)
    store.open_round()
    generate(store, cfg, FakeLLM(), round=1, show_progress=False)
    run_filters(store, cfg, 1, CachedEmbedder(HashingEmbedder(), store))
    return path, cfg, store


def add_users(store: Store) -> None:
    from goldloop.serve import add_user

    for name, role in USERS.items():
        add_user(store, name, role, PASSWORD)


def login(client, name: str, password: str = PASSWORD) -> str:
    """Log ``client`` (an httpx client) in; returns the CSRF token for its writes."""
    response = client.post("/api/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    token = response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a background thread; yields its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the review server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def drafted_pairs(path: Path, rows: list[dict[str, str]], reply: str) -> tuple[Config, Store]:
    """A generate project in ``path``: ``rows`` ingested as gold-train pairs, round 1 drafted by a fake
    model that answers every request with ``reply``, and the review users added."""
    import json

    from goldloop.generate import generate_pairs, plan_pair_requests
    from goldloop.ingest import ingest_file
    from goldloop.store import open_store

    from .conftest import fake_config

    cfg = fake_config(project={"task": "generate"})
    cfg.save(path)
    store = open_store(path)
    (path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ingest_file(store, cfg, path / "pairs.jsonl", split="train")
    store.open_round()
    llm = FakeLLM(lambda request: reply)
    generate_pairs(store, cfg, llm, 1, plan_pair_requests(store, cfg, llm, 1, per_strategy=1), show_progress=False)
    add_users(store)
    return cfg, store

"""Generation spread over two endpoints: in this process, and on Ray actors (one per endpoint).

Two fake OpenAI-compatible endpoints, each in its own process on 127.0.0.1 with a fixed
latency, answer ``--requests`` requests (the endpoints' replies cost no CPU here). Each
endpoint's limit is ``[llm] concurrency`` / latency (requests in flight over the time one
takes); the combined limit is twice that. In the same run: the requests through one endpoint
(the baseline), through both in this process (`[llm] base_urls`, `[executor] backend =
"local"`), and through both on a private Ray instance (`backend = "ray"`), each after a warm-up.

Figures (the last line printed, as JSON):
- single_share_of_limit: one endpoint's requests/s over its own limit.
- local_generation_share_of_limit: both endpoints in this process, over the combined limit.
- ray_generation_share_of_limit: both endpoints on Ray, over the combined limit (target >= 0.9).
- ray_vs_single: Ray's requests/s over the single endpoint's (2.0 would be perfect scaling).

Usage: python bench/ray_generation.py [--requests 4000] [--latency 0.2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import time

from generation_throughput import start_server      # bench/ is this script's folder: its first import path

from goldloop.config import Config
from goldloop.llm import CompletionRequest, make_llm


def run(cfg: Config, n: int, tag: str) -> float:
    """Requests per second of ``n`` requests through the backend ``cfg`` makes, after a warm-up."""
    llm = make_llm(cfg.llm, cfg.executor)
    try:
        warm = [CompletionRequest(key=f"warm-{tag}-{i}", prompt="warm up", max_tokens=8)
                for i in range(4 * cfg.llm.concurrency)]
        list(llm.complete(warm))
        reqs = [CompletionRequest(key=f"{tag}-{i}", prompt=f"Post 1: request number {i}\nPost 2:", max_tokens=32)
                for i in range(n)]
        started = time.perf_counter()
        results = list(llm.complete(reqs))
        seconds = time.perf_counter() - started
        failed = sum(not r.ok for r in results)
        if len(results) != n or failed:
            raise RuntimeError(f"{tag}: {len(results)} results, {failed} failed, for {n} requests")
        return n / seconds
    finally:
        llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--latency", type=float, default=0.2, help="Each endpoint's reply latency, seconds.")
    parser.add_argument("--concurrency", type=int, default=16, help="[llm] concurrency (per endpoint).")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the private Ray instance.")
    args = parser.parse_args()
    servers = [start_server(args.latency) for _ in range(2)]
    try:
        urls = [url for _, url in servers]
        cfg = Config()
        cfg.llm.backend, cfg.llm.model, cfg.llm.concurrency, cfg.llm.max_retries = "openai", "fake", args.concurrency, 0
        cfg.llm.http_client = "native"
        limit = args.concurrency / args.latency
        cfg.llm.base_url = urls[0]
        single = run(cfg, args.requests // 2, "single")
        cfg.llm.base_urls = urls[1:]
        local = run(cfg, args.requests, "local")
        cfg.executor.backend, cfg.executor.num_cpus = "ray", args.num_cpus
        ray_rate = run(cfg, args.requests, "ray")
    finally:
        for proc, _ in servers:
            proc.kill()
    print(f"limit {limit:.0f} requests/s per endpoint ({args.concurrency} in flight / {args.latency} s)")
    print(f"one endpoint           {single:8.1f} requests/s  {single / limit:.1%} of its limit")
    print(f"two, in this process   {local:8.1f} requests/s  {local / (2 * limit):.1%} of the combined limit")
    print(f"two, on Ray actors     {ray_rate:8.1f} requests/s  {ray_rate / (2 * limit):.1%} of the combined limit")
    print(json.dumps({"requests": args.requests, "latency_s": args.latency, "concurrency": args.concurrency,
                      "endpoints": 2, "limit_per_endpoint": round(limit, 1),
                      "single_share_of_limit": round(single / limit, 4),
                      "local_generation_share_of_limit": round(local / (2 * limit), 4),
                      "ray_generation_share_of_limit": round(ray_rate / (2 * limit), 4),
                      "ray_vs_single": round(ray_rate / single, 3)}))


if __name__ == "__main__":
    main()

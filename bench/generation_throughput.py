"""Client throughput against a local OpenAI-compatible endpoint with a fixed 200 ms latency.

The fake endpoint runs in its own process on 127.0.0.1, so the client's CPU is measured
alone. For each concurrency, 2,000 requests go through goldloop's client (its own HTTP/1.1
transport, the default), then through the same client on its aiohttp transport, and, in the
same run and against the same endpoint, through a distilabel pipeline (TextGeneration over
OpenAILLM with input_batch_size = concurrency), when distilabel is installed
(`pip install -e ".[bench]"`).

Figures:
- share_of_limit: requests/s divided by the endpoint's limit, concurrency / latency.
- client_cpu_ms_per_request: this process's CPU time per request (the endpoint is elsewhere).
- aiohttp_share_of_limit, aiohttp_cpu_ms_per_request: the same on the aiohttp transport.
- ratio_vs_distilabel: goldloop requests/s / distilabel requests/s.
- ratio_ceiling: the endpoint's limit / distilabel requests/s, the ratio a client at 100 % of
  the limit would reach: no client can beat distilabel by more than this on this endpoint.

Usage: python bench/generation_throughput.py [--requests 2000] [--latency 0.2] [--skip-distilabel]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from goldloop.llm import CompletionRequest, OpenAICompatibleLLM


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "goldloop.llm.fake_server", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"the fake endpoint did not start: {url!r}")
    return proc, url


def run_goldloop(url: str, n: int, concurrency: int, tag: str, http_client: str = "native") -> dict[str, float]:
    llm = OpenAICompatibleLLM(url, "fake", concurrency=concurrency, timeout_s=60, max_retries=0,
                              http_client=http_client)
    list(llm.complete([CompletionRequest(key=f"warm-{tag}-{i}", prompt="warm up") for i in range(concurrency)]))
    reqs = [CompletionRequest(key=f"{tag}-{i}", prompt=f"Post 1: request number {i}\nPost 2:", max_tokens=32)
            for i in range(n)]
    wall, cpu = time.perf_counter(), time.process_time()
    results = list(llm.complete(reqs))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    llm.close()
    ok = sum(r.ok for r in results)
    if ok != n:
        raise RuntimeError(f"goldloop: {n - ok} of {n} requests failed: {llm.account.summary()}")
    return {"seconds": wall, "rps": n / wall, "cpu_ms_per_request": 1000 * cpu / n}


def run_distilabel(url: str, n: int, concurrency: int) -> dict[str, float] | None:
    try:
        from distilabel.models.llms import OpenAILLM
        from distilabel.pipeline import Pipeline
        from distilabel.steps import LoadDataFromDicts
        from distilabel.steps.tasks import TextGeneration
    except ImportError:
        return None
    os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")
    data = [{"instruction": f"Write post number {i}"} for i in range(n)]
    with tempfile.TemporaryDirectory() as cache:
        with Pipeline(name=f"bench-{concurrency}", cache_dir=cache) as pipeline:
            load = LoadDataFromDicts(data=data, batch_size=concurrency)
            generate = TextGeneration(llm=OpenAILLM(model="fake", base_url=url, api_key="none", max_retries=0,
                                                    timeout=60, generation_kwargs={"max_new_tokens": 32}),
                                      input_batch_size=concurrency)
            load >> generate
        wall = time.perf_counter()
        distiset = pipeline.run(use_cache=False)
        wall = time.perf_counter() - wall
    rows = distiset["default"]["train"]
    ok = sum(1 for row in rows if row["generation"])
    if ok != n:
        raise RuntimeError(f"distilabel: {n - ok} of {n} requests came back empty")
    return {"seconds": wall, "rps": n / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--skip-distilabel", action="store_true")
    args = parser.parse_args()
    server, url = start_server(args.latency)
    figures: dict[str, float | None] = {"requests": args.requests, "latency_s": args.latency}
    try:
        for conc in args.concurrency:
            limit = conc / args.latency
            ours = run_goldloop(url, args.requests, conc, f"c{conc}")
            via_aiohttp = run_goldloop(url, args.requests, conc, f"a{conc}", http_client="aiohttp")
            theirs = None if args.skip_distilabel else run_distilabel(url, args.requests, conc)
            figures[f"goldloop_rps_c{conc}"] = round(ours["rps"], 1)
            figures[f"share_of_limit_c{conc}"] = round(ours["rps"] / limit, 3)
            figures[f"client_cpu_ms_per_request_c{conc}"] = round(ours["cpu_ms_per_request"], 3)
            figures[f"aiohttp_share_of_limit_c{conc}"] = round(via_aiohttp["rps"] / limit, 3)
            figures[f"aiohttp_cpu_ms_per_request_c{conc}"] = round(via_aiohttp["cpu_ms_per_request"], 3)
            figures[f"distilabel_rps_c{conc}"] = round(theirs["rps"], 1) if theirs else None
            figures[f"ratio_vs_distilabel_c{conc}"] = round(ours["rps"] / theirs["rps"], 1) if theirs else None
            figures[f"ratio_ceiling_c{conc}"] = round(limit / theirs["rps"], 1) if theirs else None
            print(f"concurrency {conc}: goldloop {ours['rps']:.0f} req/s = {ours['rps'] / limit:.1%} of the "
                  f"limit {limit:.0f}, {ours['cpu_ms_per_request']:.3f} ms client CPU/request (on aiohttp: "
                  f"{via_aiohttp['rps'] / limit:.1%}, {via_aiohttp['cpu_ms_per_request']:.3f} ms)"
                  + (f"; distilabel {theirs['rps']:.0f} req/s, ratio {ours['rps'] / theirs['rps']:.1f}x "
                     f"(at most {limit / theirs['rps']:.1f}x for any client)"
                     if theirs else "; distilabel not run"), flush=True)
    finally:
        server.kill()
        server.wait()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Tokens/s of the embedded llama.cpp backend, against llama.cpp's own figure for the same model.

The same prompt (a numbered few-shot list, as the strategies send) is completed many times
with 1, 4 and 8 parallel sequences. goldloop's figure is end to end: generated tokens over
wall time, through goldloop's client. llama.cpp's own figure is the decode speed the server
reports for each request (``timings.predicted_per_second``) at one sequence, i.e. what
llama.cpp itself says the model does on this machine.

Figures:
- goldloop_tokens_per_s_pN: generated tokens / wall seconds with N parallel sequences.
- llamacpp_tokens_per_s_p1: llama.cpp's own mean decode speed, one sequence.
- ratio_pN: goldloop_tokens_per_s_pN / llamacpp_tokens_per_s_p1 (above 1: parallel sequences
  beat llama.cpp's single-sequence speed).

Usage: python bench/embedded_throughput.py [--requests 24] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from goldloop.llm import CompletionRequest, EmbeddedLLM

PROMPT = ("The following are posts labelled \"sci.space\". Each is a different, realistic post with that label.\n\n"
          "Post 1: the shuttle launch was delayed again because of a sensor fault in one of the main engines\n"
          "Post 2: does anyone know the orbital period of the hubble telescope and how often it is serviced\n"
          "Post 3: nasa announced a new probe to study the outer planets with a launch planned next year\n"
          "Post 4:")


def run(parallel: int, n: int, max_tokens: int) -> dict[str, float]:
    llm = EmbeddedLLM(concurrency=parallel, context_per_sequence=512)
    try:
        list(llm.complete([CompletionRequest(key="warm", prompt=PROMPT, max_tokens=8)]))
        reqs = [CompletionRequest(key=f"p{parallel}-{i}", prompt=PROMPT, max_tokens=max_tokens, temperature=0.9,
                                  seed=i) for i in range(n)]
        wall = time.perf_counter()
        results = list(llm.complete(reqs))
        wall = time.perf_counter() - wall
    finally:
        llm.close()
    tokens = sum(r.tokens_out for r in results)
    own = [r.extra["timings"]["predicted_per_second"] for r in results if "timings" in r.extra]
    return {"tokens_per_s": tokens / wall, "llamacpp_per_sequence": statistics.mean(own) if own else float("nan"),
            "tokens": tokens, "seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    figures: dict[str, float] = {"requests": args.requests, "max_tokens": args.max_tokens}
    runs = {p: run(p, args.requests, args.max_tokens) for p in args.parallel}
    own = runs[min(runs)]["llamacpp_per_sequence"]
    figures["llamacpp_tokens_per_s_p1"] = round(own, 1)
    for p, r in runs.items():
        figures[f"goldloop_tokens_per_s_p{p}"] = round(r["tokens_per_s"], 1)
        figures[f"llamacpp_per_sequence_tokens_per_s_p{p}"] = round(r["llamacpp_per_sequence"], 1)
        figures[f"ratio_p{p}"] = round(r["tokens_per_s"] / own, 2)
        print(f"{p} parallel: goldloop {r['tokens_per_s']:.1f} tok/s end to end ({r['tokens']} tokens in "
              f"{r['seconds']:.1f} s); llama.cpp reports {r['llamacpp_per_sequence']:.1f} tok/s per sequence; "
              f"{r['tokens_per_s'] / own:.2f}x llama.cpp's single-sequence figure", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

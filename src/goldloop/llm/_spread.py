"""One backend over several: requests spread evenly over parts (endpoints, Ray actors), every
reply yielded as it arrives, under the same contract as a single backend.

Each part runs in its own thread. A part's result is handed to the caller, and the thread
asks its part for the next one only once the caller has come back (has saved it), so the
parts together never run further ahead of the caller than the sum of their windows, as
:meth:`goldloop.llm.LLM.complete` promises. A part that breaks (a worker process lost) yields a
failed result for each of its requests not yet answered: every request still yields exactly
one result, and the next run sends the failed ones again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ._base import LLM, CompletionRequest, CompletionResult
from ._flow import Account

_DONE = object()


class SpreadLLM(LLM):
    """Spreads each call's requests over ``parts`` (request i goes to part i mod n)."""

    def __init__(self, parts: Sequence[LLM], backend: str, model: str) -> None:
        if not parts:
            raise ValueError("SpreadLLM needs at least one part")
        self.parts = list(parts)
        self.backend, self.model = backend, model
        self._stopping = False
        self._lost = 0                      # requests failed here because their part broke
        self._lock = threading.Lock()

    @property
    def account(self) -> Account:
        """The parts' accounts added up (what every endpoint received)."""
        total = Account()
        for part in self.parts:
            acc = getattr(part, "account", None)
            if acc is None:
                continue
            for name in ("requested", "succeeded", "failed", "not_sent", "retried", "retries", "sent",
                         "breaker_trips", "tokens_in", "tokens_out"):
                setattr(total, name, getattr(total, name) + getattr(acc, name))
            total.retry_causes.update(acc.retry_causes)
            total.failure_causes.update(acc.failure_causes)
        if self._lost:
            total.failed += self._lost
            total.failure_causes["worker lost"] += self._lost
        return total

    def complete(self, requests: Sequence[CompletionRequest]) -> Iterator[CompletionResult]:
        if not requests:
            return
        self._stopping = False
        shares = [list(requests[i::len(self.parts)]) for i in range(len(self.parts))]
        out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        back = [threading.Semaphore(0) for _ in self.parts]       # released once the caller saved that part's result
        quit_ = threading.Event()

        def hand_over(index: int, result: CompletionResult) -> bool:
            """Give the caller one result and wait until it has saved it; False if it stopped asking."""
            out.put((index, result))
            while not back[index].acquire(timeout=0.5):
                if quit_.is_set():
                    return False
            return not quit_.is_set()

        def drive(index: int, part: LLM, share: list[CompletionRequest]) -> None:
            answered: set[str] = set()
            try:
                for result in part.complete(share):
                    answered.add(result.key)
                    if not hand_over(index, result):
                        return
            except Exception as exc:                               # the part broke: its unanswered requests fail
                if not self._stopping:
                    why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    for req in share:
                        if req.key not in answered:
                            with self._lock:
                                self._lost += 1
                            if not hand_over(index, CompletionResult(req.key, None, error=f"worker lost: {why}")):
                                return
            finally:
                out.put((index, _DONE))

        threads = [threading.Thread(target=drive, args=(i, part, share), name=f"goldloop-spread-{i}", daemon=True)
                   for i, (part, share) in enumerate(zip(self.parts, shares)) if share]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                index, item = out.get()
                if item is _DONE:
                    running -= 1
                    continue
                yield item
                back[index].release()                              # the caller is back: it has saved this one
        finally:
            quit_.set()
            if running:
                self.stop()
            for t in threads:
                t.join(timeout=30)

    def stop(self) -> None:
        self._stopping = True
        for part in self.parts:
            part.stop()

    def close(self) -> None:
        for part in self.parts:
            part.close()

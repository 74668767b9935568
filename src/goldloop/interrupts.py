"""Stopping a long stage without losing work: the first Ctrl-C (or SIGTERM) asks it to finish
what is in flight and save it; a second one abandons that and stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass
class StopRequest:
    signal: str = ""                    # the signal's name once one arrived, e.g. "SIGINT"


@contextmanager
def graceful_stop(on_stop: Callable[[], None]) -> Iterator[StopRequest]:
    """While the block runs, the first SIGINT or SIGTERM calls ``on_stop()`` and is recorded in
    the yielded :class:`StopRequest`; a second raises KeyboardInterrupt. Outside the main
    thread signals cannot be caught, and nothing changes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.signal:
            raise KeyboardInterrupt
        request.signal = signal.Signals(signum).name
        on_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""Flow control for an endpoint: rate limits, a circuit breaker, and the run's account.

All three live on one asyncio event loop (the client's), so they need no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class TokenBucket:
    """Allows ``per_minute`` units a minute, refilled continuously, bursting up to one second's worth.

    A request larger than the whole bucket waits for a full bucket and then goes, so one big
    request can never block a run for ever. ``per_minute = 0`` means no limit.
    """

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate) if per_minute > 0 else 0.0
        self.level = self.capacity
        self.updated = time.monotonic()

    async def take(self, amount: float) -> None:
        if self.capacity <= 0:
            return
        amount = min(amount, self.capacity)
        while True:
            now = time.monotonic()
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
            if self.level >= amount:
                self.level -= amount
                return
            await asyncio.sleep((amount - self.level) / self.rate)

    def refund(self, amount: float) -> None:
        """Give back what an estimate took beyond what the reply really used."""
        if self.capacity > 0 and amount > 0:
            self.level = min(self.capacity, self.level + amount)


class EndpointDown(Exception):
    """The endpoint stayed down longer than the breaker's give-up time."""


class CircuitBreaker:
    """After ``failures`` consecutive connection failures, timeouts or 5xx replies the endpoint
    counts as down: requests wait instead of failing; after ``cooldown_s`` one probe goes
    through, and its success closes the breaker again. Down for longer than ``give_up_s``:
    waiting requests give up with :class:`EndpointDown`."""

    def __init__(self, failures: int, cooldown_s: float, give_up_s: float) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.give_up_s = give_up_s
        self.consecutive = 0
        self.opened_at: float | None = None
        self.down_since: float | None = None
        self.probing = False
        self.trips = 0

    async def before(self) -> bool:
        """Wait until a request may go; True when it goes as the probe."""
        while self.opened_at is not None:
            now = time.monotonic()
            if self.down_since is not None and now - self.down_since > self.give_up_s:
                raise EndpointDown(f"endpoint down for more than {self.give_up_s:.0f} s")
            if not self.probing and now - self.opened_at >= self.cooldown_s:
                self.probing = True
                return True
            await asyncio.sleep(min(0.05 + self.cooldown_s / 10, 1.0))
        return False

    def success(self, probe: bool) -> None:
        self.consecutive = 0
        if probe or self.opened_at is not None:
            self.opened_at = None
            self.down_since = None
            self.probing = False

    def failure(self, probe: bool) -> None:
        self.consecutive += 1
        now = time.monotonic()
        if probe:
            self.opened_at = now            # still down: wait another cooldown
            self.probing = False
        elif self.opened_at is None and self.consecutive >= self.threshold:
            self.opened_at = now
            self.down_since = now
            self.trips += 1

    def neutral(self, probe: bool) -> None:
        """A reply that says nothing about the endpoint's health (429, 4xx): release the probe."""
        if probe:
            self.probing = False
            self.opened_at = time.monotonic() - self.cooldown_s


@dataclass
class Account:
    """What happened to every request of a run: nothing is left unaccounted for.

    ``sent`` counts every request written to the endpoint (each attempt, and each resend the
    transport makes on a new connection when a kept-alive one was lost), so it matches the
    endpoint's own count of requests received. ``retries`` counts every attempt after a
    request's first, those resends included (cause ``stale connection``).
    """

    requested: int = 0
    succeeded: int = 0
    failed: int = 0
    not_sent: int = 0                 # left unsent because the run was stopped (Ctrl-C, SIGTERM)
    retried: int = 0                  # requests that needed more than one attempt
    retries: int = 0                  # extra attempts in all
    sent: int = 0                     # requests written to the endpoint, every attempt and resend
    retry_causes: Counter[str] = field(default_factory=Counter)
    failure_causes: Counter[str] = field(default_factory=Counter)
    breaker_trips: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "succeeded": self.succeeded, "failed": self.failed,
                "not_sent": self.not_sent,
                "retried": self.retried, "retries": self.retries, "sent": self.sent,
                "retry_causes": dict(self.retry_causes),
                "failure_causes": dict(self.failure_causes), "breaker_trips": self.breaker_trips,
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out}

    def summary(self) -> str:
        line = (f"{self.requested} requested, {self.succeeded} succeeded, {self.retried} retried "
                f"({self.retries} retries, {self.sent} attempts sent), {self.failed} failed")
        if self.not_sent:
            line += f", {self.not_sent} not sent (stopped)"
        if self.failure_causes:
            line += " (" + ", ".join(f"{n} {c}" for c, n in self.failure_causes.most_common()) + ")"
        return line


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (less CPU per request), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

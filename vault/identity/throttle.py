"""Throttling of the token endpoint, of repeated failed authentications, and of actors
refused access over and over (probing records that are not theirs).

The counts live in this process's memory: with several replicas behind a load balancer each
replica counts on its own, so the effective limit is the configured one times the number of
replicas (docs/authentication.md). That bounds brute force and key-id flooding well enough;
a shared limit belongs in front of the replicas (the reverse proxy) or in a shared store.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from vault.errors import TooManyRequests
from vault.identity.principal import Principal
from vault.observability import metrics
from vault.settings import Settings


class SlidingWindow:
    """At most ``limit`` events per key in any ``window`` seconds. Only the most recently
    seen ``max_keys`` keys are remembered, so a flood of addresses cannot exhaust memory."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_for(self, key: str) -> float:
        """Seconds until ``key`` may act again; 0 when it may act now."""
        with self._lock:
            events = self._current(key, self._clock())
            if events is None or len(events) < self.limit:
                return 0.0
            return max(events[0] + self.window - self._clock(), 0.001)

    def hit(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            events = self._current(key, now)
            if events is None:
                events = self._events[key] = deque()
                while len(self._events) > self._max_keys:
                    self._events.popitem(last=False)
            events.append(now)
            self._events.move_to_end(key)
            while len(events) > self.limit:
                events.popleft()

    def _current(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        return events


def actor_key(principal: Principal) -> str:
    """Who a refusal counts against: the authenticated identity (role, issuer, subject),
    hashed so that no INS sits in this process's memory longer than its request."""
    identity = "\x1f".join((principal.role.value, principal.issuer or "", principal.subject))
    return "actor:" + hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


class Throttle:
    def __init__(
        self,
        token_requests: SlidingWindow,
        auth_failures: SlidingWindow,
        refusals: SlidingWindow | None = None,
    ) -> None:
        self.token_requests = token_requests
        self.auth_failures = auth_failures
        self.refusals = refusals or SlidingWindow(30, auth_failures.window)

    @classmethod
    def from_settings(cls, settings: Settings) -> Throttle:
        window = settings.throttle_window_seconds
        return cls(
            SlidingWindow(settings.token_rate_limit, window),
            SlidingWindow(settings.auth_failure_limit, window),
            SlidingWindow(settings.refusal_limit, window),
        )

    def guard_refusals(self, principal: Principal) -> None:
        """Turn away, before it reaches any record, an actor refused too often of late:
        their next probe would only add a refusal to someone's history."""
        wait = self.refusals.wait_for(actor_key(principal))
        if wait:
            metrics.refusal_throttled(principal.role.value)
            raise TooManyRequests(
                "Too many refused requests; retry later", retry_after=math.ceil(wait)
            )

    def refused(self, principal: Principal, times: int) -> None:
        key = actor_key(principal)
        for _ in range(times):
            self.refusals.hit(key)

    def guard_authentication(self, keys: Iterable[str]) -> None:
        """Refuse outright while a caller has failed too often: its next attempt, right or
        wrong, would only tell it whether to keep guessing."""
        wait = max((self.auth_failures.wait_for(key) for key in keys), default=0.0)
        if wait:
            raise TooManyRequests(
                "Too many failed authentications; retry later", retry_after=math.ceil(wait)
            )

    def failed_authentication(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.auth_failures.hit(key)

    def token_request(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        wait = max((self.token_requests.wait_for(key) for key in keys), default=0.0)
        if wait:
            raise TooManyRequests(
                "Too many token requests; retry later", retry_after=math.ceil(wait)
            )
        for key in keys:
            self.token_requests.hit(key)

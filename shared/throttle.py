"""One throttle on failed authentication per client, read by every door that takes a secret:
console sign-in, bearer tokens on the API, Open311's ``api_key``.

A bucket per client address holds ``burst`` failures and refills at ``per_minute``; while
it is empty every attempt from that address is refused (429) before the secret is even
compared, so guessing is slow whatever door is tried. Successful authentication costs
nothing. In memory, per process; least recently seen clients are forgotten beyond a bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request

TOO_MANY_FAILURES = (
    "demasiados intentos de autenticación fallidos desde su conexión; "
    "intente de nuevo en {seconds} segundos"
)


class FailureThrottle:
    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        max_clients: int = 50_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self._now = monotonic
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str) -> float:
        now = self._now()
        level, last = self._levels.pop(client, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        self._levels[client] = (level, now)
        while len(self._levels) > self.max_clients:
            self._levels.popitem(last=False)
        return level

    def retry_after(self, client: str) -> int:
        """0 if ``client`` may try again now, else the whole seconds until it may."""
        level = self._level(client)
        return 0 if level >= 1.0 else max(1, math.ceil((1.0 - level) / self.rate))

    def failed(self, client: str) -> None:
        level = self._level(client)
        self._levels[client] = (max(0.0, level - 1.0), self._now())

    def message(self, seconds: int) -> str:
        return TOO_MANY_FAILURES.format(seconds=seconds)


def client_of(request: Request) -> str:
    """The client's address as the server sees it: the peer, or the address a trusted proxy
    forwarded (uvicorn rewrites it only for ``DEFENSA311_TRUSTED_PROXIES``)."""
    return request.client.host if request.client else "desconocido"


def throttle_of(request: Request) -> FailureThrottle:
    throttle = request.app.state.auth_throttle
    assert isinstance(throttle, FailureThrottle)
    return throttle

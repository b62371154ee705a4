"""Brute-force limits on sign-in and pairing, per account and per client address.

Counting uses the `limits` library. Its storage is `DORSI_RATE_LIMIT_STORAGE`: the default
`memory://` counts per server process; point every process at one `redis://` to share.
"""

import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.core.errors import TooManyRequests


class SignInLimiter:
    def __init__(self, rule: str, storage_uri: str) -> None:
        self.rule = parse(rule)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, *keys: tuple[str, ...]) -> None:
        """Count one attempt against each key; 429 if any is past its limit."""
        blocked = [key for key in keys if not self.limiter.hit(self.rule, *key)]
        if blocked:
            reset = max(
                self.limiter.get_window_stats(self.rule, *key).reset_time for key in blocked
            )
            raise TooManyRequests(max(1, math.ceil(reset - time.time())))

"""Brute-force limits on sign-in and pairing, per account and per client address.

Counting uses the `limits` library. Its storage is `DORSI_RATE_LIMIT_STORAGE`: the default
`memory://` counts per server process; point every process at one `redis://` to share.

Sign-in counts failures only (`SignInLimiter.check` before the credentials are verified,
`SignInLimiter.failed` after a refused grant; a success counts nothing). Three counts
apply: per address (`DORSI_SIGN_IN_RATE_LIMIT`), per account from one address (the same
rule), and per account from everywhere (`DORSI_SIGN_IN_ACCOUNT_CEILING`, much higher).
So failures from other addresses cannot lock the right password out, short of the
ceiling. Check and count are two steps: concurrent attempts may pass a limit by a few.
"""

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.core.errors import TooManyRequests

Key = tuple[str, ...]


class SignInLimiter:
    def __init__(self, rule: str, storage_uri: str, *, account_ceiling: str = "100/hour") -> None:
        self.rule = parse(rule)
        self.ceiling = parse(account_ceiling)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def _sign_in_keys(
        self, kind: str, account: str, address: str
    ) -> list[tuple[RateLimitItem, Key]]:
        """The counts of one sign-in: ``kind`` is ``account`` (a clinician's email) or
        ``client`` (an API client's id)."""
        return [
            (self.rule, ("sign-in", "ip", address)),
            (self.rule, ("sign-in", kind, account, "ip", address)),
            (self.ceiling, ("sign-in", kind, account)),
        ]

    def _refuse(self, blocked: list[tuple[RateLimitItem, Key]]) -> None:
        if blocked:
            reset = max(
                self.limiter.get_window_stats(rule, *key).reset_time for rule, key in blocked
            )
            raise TooManyRequests(max(1, math.ceil(reset - time.time())))

    def check(self, kind: str, account: str, address: str) -> None:
        """429 if this sign-in is past a limit already; counts nothing."""
        keys = self._sign_in_keys(kind, account, address)
        self._refuse([(rule, key) for rule, key in keys if not self.limiter.test(rule, *key)])

    def failed(self, kind: str, account: str, address: str) -> None:
        """Count one refused sign-in against each of its limits."""
        for rule, key in self._sign_in_keys(kind, account, address):
            self.limiter.hit(rule, *key)

    def hit(self, *keys: Key) -> None:
        """Count one attempt against each key; 429 if any is past its limit (pairing and
        refresh, where every attempt counts)."""
        self._refuse([(self.rule, key) for key in keys if not self.limiter.hit(self.rule, *key)])

"""Brute-force limits on sign-in and pairing, per account and per client address.

Attempts are counted in the database (`rate_limit_hit`), so every API process of a
deployment counts against the same limits, with no component beyond the database. Each
count commits in a transaction of its own: a refused sign-in rolls its request back, but
not the failure it counts.

Sign-in counts failures only (`SignInLimiter.check` before the credentials are verified,
`SignInLimiter.failed` after a refused grant; a success counts nothing). Three counts
apply: per address (`DORSI_SIGN_IN_RATE_LIMIT`), per account from one address (the same
rule), and per account from everywhere (`DORSI_SIGN_IN_ACCOUNT_CEILING`, much higher).
So failures from other addresses cannot lock the right password out, short of the
ceiling. Windows move: an attempt counts for one window's length after it was made.
Check and count are two steps: concurrent attempts may pass a limit by a few.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.models import RateLimitHit
from app.core.columns import utcnow
from app.core.db import execute, table_of, transaction
from app.core.errors import TooManyRequests

HITS = table_of(RateLimitHit)
Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """At most ``amount`` attempts per ``window``."""

    amount: int
    window: timedelta

    @classmethod
    def parse(cls, text: str) -> "Rule":
        item = parse(text)
        return cls(item.amount, timedelta(seconds=item.get_expiry()))


def _name(key: Key) -> str:
    return "|".join(key)


class SignInLimiter:
    def __init__(
        self, engine: AsyncEngine, rule: str, *, account_ceiling: str = "100/hour"
    ) -> None:
        self.engine = engine
        self.rule = Rule.parse(rule)
        self.ceiling = Rule.parse(account_ceiling)

    def _sign_in_keys(self, kind: str, account: str, address: str) -> list[tuple[Rule, Key]]:
        """The counts of one sign-in: ``kind`` is ``account`` (a clinician's email) or
        ``client`` (an API client's id)."""
        return [
            (self.rule, ("sign-in", "ip", address)),
            (self.rule, ("sign-in", kind, account, "ip", address)),
            (self.ceiling, ("sign-in", kind, account)),
        ]

    async def _blocked(self, counts: list[tuple[Rule, Key]]) -> list[timedelta]:
        """For each limit already reached, how long until its oldest counted attempt
        leaves the window."""
        now = utcnow()
        since = now - max(rule.window for rule, _ in counts)
        async with transaction(self.engine) as session:
            rows = (
                await execute(
                    session,
                    select(HITS.c.key, HITS.c.at).where(
                        HITS.c.key.in_([_name(key) for _, key in counts]), HITS.c.at > since
                    ),
                )
            ).all()
        waits = []
        for rule, key in counts:
            name = _name(key)
            times = sorted(row.at for row in rows if row.key == name and row.at > now - rule.window)
            if len(times) >= rule.amount:
                waits.append(times[len(times) - rule.amount] + rule.window - now)
        return waits

    @staticmethod
    def _refuse(waits: list[timedelta]) -> None:
        if waits:
            raise TooManyRequests(max(1, math.ceil(max(waits).total_seconds())))

    async def _count(self, keys: list[Key], now: datetime) -> None:
        async with transaction(self.engine) as session:
            await execute(session, insert(HITS), [{"key": _name(key), "at": now} for key in keys])

    async def check(self, kind: str, account: str, address: str) -> None:
        """429 if this sign-in is past a limit already; counts nothing."""
        self._refuse(await self._blocked(self._sign_in_keys(kind, account, address)))

    async def failed(self, kind: str, account: str, address: str) -> None:
        """Count one refused sign-in against each of its limits."""
        keys = [key for _, key in self._sign_in_keys(kind, account, address)]
        await self._count(keys, utcnow())

    async def hit(self, *keys: Key) -> None:
        """Count one attempt against each key; 429 if any is past its limit (pairing and
        refresh, where every attempt counts). A refused attempt is not counted, so a
        steady stream of them lets the window move on."""
        counts = [(self.rule, key) for key in keys]
        self._refuse(await self._blocked(counts))
        await self._count(list(keys), utcnow())


async def prune(engine: AsyncEngine, longest: timedelta, now: datetime) -> int:
    """Forget attempts older than the longest window (run by the worker); how many."""
    async with transaction(engine) as session:
        result = await execute(session, delete(HITS).where(HITS.c.at < now - longest))
    return int(getattr(result, "rowcount", 0) or 0)

"""What /metrics reads about webhooks and alerts: the delivery queue, failures, and how
far the feed's consumers inside Dorsi (endpoints, pain alerts) are behind it.

Every statement is cheap enough to run at each scrape: pending and given-up deliveries
are read off the (status, next_attempt_at) index, endpoints and clinics are few, and a
consumer's first unprocessed change is one probe of the change table's (clinic_id, id)
index."""

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.models import Clinic
from app.core.db import table_of
from app.core.gauges import Reading, seconds_since, worker_queue
from app.sync.models import Change
from app.webhooks.models import AlertCursor, WebhookDelivery, WebhookEndpoint

DELIVERIES = table_of(WebhookDelivery)
ENDPOINTS = table_of(WebhookEndpoint)
CHANGES = table_of(Change)
CLINICS = table_of(Clinic)
CURSORS = table_of(AlertCursor)

# Why an endpoint is disabled, as a label: Dorsi's reasons, or a person's choice.
DISABLED_REASONS = ("gone", "failing", "manual")

# The pending deliveries, in one pass: those a worker would claim now (as
# `app.webhooks.delivery` claims them: due, of an enabled endpoint), and those waiting
# to be tried again after a failed attempt. A disabled endpoint's deliveries wait for it.
_due = and_(DELIVERIES.c.next_attempt_at <= bindparam("now"), ENDPOINTS.c.enabled)
_retrying = and_(DELIVERIES.c.last_attempt_at.is_not(None), ENDPOINTS.c.enabled)
_PENDING = (
    select(
        func.count().filter(_due).label("due"),
        func.min(DELIVERIES.c.next_attempt_at).filter(_due).label("oldest_due"),
        func.count().filter(_retrying).label("retrying"),
    )
    .select_from(DELIVERIES.join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id))
    .where(DELIVERIES.c.status == "pending")
)
_GIVEN_UP = select(func.count()).where(DELIVERIES.c.status == "failed")
_ENDPOINT_STATES = select(
    ENDPOINTS.c.enabled,
    ENDPOINTS.c.disabled_reason,
    func.count().label("endpoints"),
    func.count(ENDPOINTS.c.failing_since).label("failing"),
    func.min(ENDPOINTS.c.failing_since).label("failing_since"),
).group_by(ENDPOINTS.c.enabled, ENDPOINTS.c.disabled_reason)


def _first_change_after(clinic_id: Any, through: Any) -> ScalarSelect[Any]:
    """When the clinic's first change after ``through`` happened (NULL: none)."""
    return (
        select(CHANGES.c.occurred_at)
        .where(CHANGES.c.clinic_id == clinic_id, CHANGES.c.id > through)
        .order_by(CHANGES.c.id)
        .limit(1)
        .scalar_subquery()
    )


# Each consumer's oldest change not yet processed. An enabled endpoint has processed
# the changes it queued deliveries for (`through_change`; a disabled one starts again
# from the newest change when it is enabled); pain alerts, those the worker evaluated.
# A clinic whose alerts were never evaluated is behind by all its changes.
_WEBHOOK_LAG = select(
    func.min(_first_change_after(ENDPOINTS.c.clinic_id, ENDPOINTS.c.through_change))
).where(ENDPOINTS.c.enabled)
_ALERT_LAG = select(
    func.min(_first_change_after(CLINICS.c.id, func.coalesce(CURSORS.c.through_change, 0)))
).select_from(CLINICS.outerjoin(CURSORS, CURSORS.c.clinic_id == CLINICS.c.id))


async def probe(connection: AsyncConnection, now: datetime) -> Iterable[Reading]:
    """The webhook and alert gauges, as of ``now``."""
    pending = (await connection.execute(_PENDING, {"now": now})).one()
    given_up = (await connection.execute(_GIVEN_UP)).scalar_one()
    failing, failing_since = 0, []
    disabled: Counter[str] = Counter(dict.fromkeys(DISABLED_REASONS, 0))
    for state in await connection.execute(_ENDPOINT_STATES):
        if state.enabled:
            failing += state.failing
            failing_since += [state.failing_since] if state.failing_since else []
        else:
            disabled[state.disabled_reason or "manual"] += state.endpoints
    lags = {
        "webhooks": (await connection.execute(_WEBHOOK_LAG)).scalar(),
        "pain_alerts": (await connection.execute(_ALERT_LAG)).scalar(),
    }
    return [
        *worker_queue("webhook_deliveries", pending.due, pending.oldest_due, now),
        Reading(
            "dorsi_webhook_deliveries_retrying",
            "Webhook deliveries whose last attempt failed, waiting to be tried again.",
            pending.retrying,
        ),
        Reading(
            "dorsi_webhook_deliveries_given_up",
            "Webhook deliveries given up (answered 410, or failed every attempt), in the "
            "delivery log.",
            given_up,
        ),
        Reading(
            "dorsi_webhook_endpoints_failing",
            "Enabled webhook endpoints whose every attempt has failed since some time.",
            failing,
        ),
        Reading(
            "dorsi_webhook_endpoints_failing_longest_seconds",
            "How long the enabled webhook endpoint failing longest has failed (0 when none).",
            seconds_since(min(failing_since, default=None), now),
        ),
        *(
            Reading(
                "dorsi_webhook_endpoints_disabled",
                "Disabled webhook endpoints, by reason: gone (answered 410), failing (for "
                "5 days), manual (by a person).",
                count,
                {"reason": reason},
            )
            for reason, count in disabled.items()
        ),
        *(
            Reading(
                "dorsi_change_feed_lag_seconds",
                "Age of the oldest change a consumer inside Dorsi has not yet processed, by "
                "consumer (0 when caught up).",
                seconds_since(oldest, now),
                {"consumer": consumer},
            )
            for consumer, oldest in lags.items()
        ),
    ]

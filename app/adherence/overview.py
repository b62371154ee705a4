"""The clinic overview: every patient's adherence over the last 7 and 30 days, pain alerts
and last upload, sorted and paged by the database.

A request first brings the clinic's figures up to date (`rollups.refresh`), then reads one
page with one query over the clinic's rollup rows, never over its records. Whether a
patient is below the clinic's adherence threshold is decided as the page is read, with
the threshold of the moment. Just after patients' midnights, until the worker moves their
next day's figures into place, the page reads those figures where they are in force
(`rollups.in_force`) and sorts the clinic's rows, as the orders without an index do:
moving them itself would cost the reader a write per patient.
"""

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    tuple_,
)
from sqlalchemy import select as sa_select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.adherence import rollups
from app.adherence.models import PERCENT_7D_ORDER, STALE, AdherenceRollup
from app.adherence.rollups import MONTH, ROLLUPS, WEEK, ClinicSettings
from app.adherence.schemas import OverviewQuery
from app.audit import service as audit
from app.auth.models import Clinic
from app.auth.principal import Caller
from app.core.columns import UTCDateTime, utcnow
from app.core.db import execute, table_of
from app.core.pagination import cursor_time, decode_cursor, encode_cursor, invalid_cursor
from app.patients.models import Patient

# Built once: every overview request reads them.
CLINIC_THRESHOLDS = sa_select(
    col(Clinic.id), col(Clinic.adherence_threshold_percent), col(Clinic.pain_alert_at)
).where(col(Clinic.id) == bindparam("clinic_id"))


async def read(session: AsyncSession, caller: Caller, query: OverviewQuery) -> dict[str, Any]:
    """An Overview's fields (by alias) as plain values in its order, rows included: they
    render as JSON as they are."""
    clinic = (await execute(session, CLINIC_THRESHOLDS, {"clinic_id": caller.clinic_id})).one()
    now = utcnow()
    await rollups.refresh(session, clinic, now)
    rows, cursor = await page(session, clinic, query, now)
    # One event per patient shown, as for the patient list.
    await audit.record_many(
        session,
        caller,
        "list",
        "adherence_overview",
        [(row["patient_id"], row["patient_id"]) for row in rows],
    )
    return {
        "items": rows,
        "next_cursor": cursor,
        "threshold_percent": clinic.adherence_threshold_percent,
        "pain_alert_at": clinic.pain_alert_at,
    }


Figure = Callable[[str], Any]

# Each order: its key, from a function giving a figure's column (or expression), and
# whether it descends. Patients with nothing expected (null percent) come last either way.
SORTS: dict[str, tuple[Callable[[Figure], Any], bool]] = {
    "adherence_7d": (lambda figure: func.coalesce(figure("percent_7d"), 1e9), False),
    "-adherence_7d": (lambda figure: func.coalesce(figure("percent_7d"), -1.0), True),
    "adherence_30d": (lambda figure: func.coalesce(figure("percent_30d"), 1e9), False),
    "-adherence_30d": (lambda figure: func.coalesce(figure("percent_30d"), -1.0), True),
    "-pain_alerts_7d": (lambda figure: figure("pain_alerts_7d"), True),
    # Never uploaded counts as longest ago.
    "last_upload_at": (
        lambda _: func.coalesce(col(AdherenceRollup.last_upload_at), literal(STALE, UTCDateTime())),
        False,
    ),
    "-last_upload_at": (
        lambda _: func.coalesce(col(AdherenceRollup.last_upload_at), literal(STALE, UTCDateTime())),
        True,
    ),
    "reference": (lambda _: col(Patient.reference), False),
}
# The default order's key as its index spells it: read off the index, never sorted.
INDEXED = literal_column(PERCENT_7D_ORDER, Float())


def _position(query: OverviewQuery) -> tuple[Any, uuid.UUID]:
    assert query.cursor is not None
    sort, value, last = decode_cursor(query.cursor, 3)
    if sort != query.sort:
        raise invalid_cursor()
    try:
        patient_id = uuid.UUID(str(last))
        if query.sort.endswith("last_upload_at"):
            value = cursor_time(value)
    except (TypeError, ValueError):
        raise invalid_cursor() from None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, datetime)):
        raise invalid_cursor()
    return value, patient_id


# The figures a page shows, in `_row`'s terms.
FIGURES_SHOWN = (
    "as_of",
    "expected_7d",
    "credited_7d",
    "percent_7d",
    "expected_30d",
    "credited_30d",
    "percent_30d",
    "pain_alerts_7d",
    "max_pain_7d",
)


@cache  # one per sort, choice of filters and source of figures: a hundred at most
def _page_statement(
    sort: str, below_threshold: bool | None, pain_alert: bool | None, after: bool, ahead: bool
) -> Select[Any]:
    """The page query for a sort, a choice of filters, and whether some of the figures are
    next days' in force (``ahead``), built once; the clinic, its threshold, the moment, the
    position after which the page starts and its size are parameters."""
    rollup, patient = ROLLUPS.c, table_of(Patient).c
    now = bindparam("now", type_=rollup.valid_until.type)

    def figure(name: str) -> Any:
        return rollups.in_force(name, now) if ahead else rollup[name]

    make_key, descending = SORTS[sort]
    key = INDEXED if sort == "adherence_7d" and not ahead else make_key(figure)
    statement = (
        sa_select(
            rollup.patient_id,
            *(figure(name).label(name) for name in FIGURES_SHOWN),
            rollup.last_upload_at,
            patient.reference,
            patient.time_zone,
            key.label("sort_key"),
        )
        .join_from(
            ROLLUPS,
            table_of(Patient),
            and_(patient.clinic_id == rollup.clinic_id, patient.id == rollup.patient_id),
        )
        .where(rollup.clinic_id == bindparam("clinic_id"), patient.deleted_at.is_(None))
    )
    percent = figure("percent_7d")
    below = percent < bindparam("threshold", type_=Integer())
    if below_threshold is not None:
        statement = statement.where(below if below_threshold else ~below | percent.is_(None))
    if pain_alert is not None:
        alerting = figure("pain_alerts_7d") > 0
        statement = statement.where(alerting if pain_alert else ~alerting)
    if after:
        position = tuple_(key, rollup.patient_id)
        start = tuple_(
            bindparam("after_key", type_=key.type),
            bindparam("after_id", type_=rollup.patient_id.type),
        )
        statement = statement.where(position < start if descending else position > start)
    order = (key.desc(), rollup.patient_id.desc()) if descending else (key, rollup.patient_id)
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer()))


async def page(
    session: AsyncSession, clinic: ClinicSettings, query: OverviewQuery, now: datetime
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of OverviewRows as at ``now``, as plain values in their fields' order (see
    ``_row``), and the cursor of the next."""
    ahead = await rollups.any_next_in_force(session, clinic.id, now)
    statement = _page_statement(
        query.sort, query.below_threshold, query.pain_alert, query.cursor is not None, ahead
    )
    values: dict[str, Any] = {"clinic_id": clinic.id, "limit": query.limit + 1}
    if ahead:
        values["now"] = now
    if query.below_threshold is not None:
        values["threshold"] = clinic.adherence_threshold_percent
    if query.cursor is not None:
        values["after_key"], values["after_id"] = _position(query)
    found = (await execute(session, statement, values)).all()
    rows = [_row(clinic, row) for row in found[: query.limit]]
    cursor = None
    if len(found) > query.limit:
        last = found[query.limit - 1]
        value = last.sort_key
        if isinstance(value, datetime):
            value = value.isoformat()
        cursor = encode_cursor([query.sort, value, str(last.patient_id)])
    return rows, cursor


def _row(clinic: ClinicSettings, rollup: Row[Any]) -> dict[str, Any]:
    """A page row: the rollup's columns with the patient's reference and time zone, as an
    OverviewRow's fields (by alias) in its order. They come from columns the database
    already constrains, so they render as JSON as they are, with no model to build."""
    today = rollup.as_of or date.min

    def window(
        days: int, expected: float, credited: float, percent: float | None
    ) -> dict[str, Any]:
        return {
            "from": today - timedelta(days=days),
            "to": today - timedelta(days=1),
            "expected": expected,
            "credited": credited,
            "adherence_percent": percent,
        }

    return {
        "patient_id": rollup.patient_id,
        "reference": rollup.reference,
        "time_zone": rollup.time_zone,
        "as_of": today,
        "last_7_days": window(WEEK, rollup.expected_7d, rollup.credited_7d, rollup.percent_7d),
        "last_30_days": window(MONTH, rollup.expected_30d, rollup.credited_30d, rollup.percent_30d),
        "below_threshold": rollup.percent_7d is not None
        and rollup.percent_7d < clinic.adherence_threshold_percent,
        "pain_alerts_7d": rollup.pain_alerts_7d,
        "max_pain_7d": rollup.max_pain_7d,
        "last_upload_at": rollup.last_upload_at,
    }

"""Which event date a DAG run processes: one definition for every task."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone


class EventDateError(ValueError):
    """The run's event_date parameter is not a valid YYYY-MM-DD date."""


def parse_event_date(value: str | date) -> date:
    """A date from 'YYYY-MM-DD' (strict), or a clear error."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    text = str(value).strip()
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise EventDateError(
            f"event_date parameter {value!r} is not a date in YYYY-MM-DD form (e.g. 2026-11-20)"
        ) from None


def resolve_event_date(param: str | None, data_interval_start: datetime | None,
                       run_after: datetime | None = None) -> date:
    """The run's event date: the `event_date` param when given, else the UTC
    date of the data interval's start (a daily interval covers exactly one
    event date). Runs without a data interval fall back to the day before
    run_after, like a manual run of a daily schedule."""
    if param not in (None, ""):
        return parse_event_date(param)
    if data_interval_start is not None:
        return data_interval_start.astimezone(timezone.utc).date()
    if run_after is not None:
        return (run_after.astimezone(timezone.utc) - timedelta(days=1)).date()
    raise EventDateError("the run has neither an event_date parameter nor a data interval")

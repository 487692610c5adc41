"""Search parameters of ITI-67, parsed into criteria (FHIR date prefixes, tokens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vault.errors import BadRequest

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def date_bounds(value: str) -> tuple[str, datetime, datetime]:
    """A FHIR date search value: its prefix and the instant range its precision covers."""
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    if prefix in ("ne", "sa", "eb", "ap"):
        raise BadRequest(f"Date prefix {prefix} is not supported", expression="date")
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            end = datetime(int(text) + 1, 1, 1, tzinfo=UTC)
        elif len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        elif len(text) == 10:
            start = datetime.fromisoformat(text).replace(tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            start = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            end = start + timedelta(seconds=1)
    except (ValueError, OverflowError):
        # OverflowError: a valid date at the very end of the calendar, plus its precision.
        raise BadRequest("Invalid date search value", expression="date") from None
    return prefix, start, end


def apply_date(criteria: dict[str, Any], value: str) -> None:
    prefix, start, end = date_bounds(value)
    if prefix == "eq":
        criteria.update(
            date_from=start, date_from_inclusive=True, date_to=end, date_to_inclusive=False
        )
    elif prefix == "ge":
        criteria.update(date_from=start, date_from_inclusive=True)
    elif prefix == "gt":
        criteria.update(date_from=end, date_from_inclusive=True)
    elif prefix == "le":
        criteria.update(date_to=end, date_to_inclusive=False)
    elif prefix == "lt":
        criteria.update(date_to=start, date_to_inclusive=False)


def split_or(values: list[str]) -> tuple[str, ...]:
    """Repeated parameters AND, commas OR; the vault supports OR within one parameter."""
    if len(values) > 1:
        raise BadRequest("Give each of these parameters once; use commas for alternatives")
    return tuple(item for item in values[0].split(",") if item) if values else ()

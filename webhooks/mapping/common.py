"""What every family's mapping shares: times, ids (sent as an id or an expanded
object), our metadata, currency codes, and an event's object and time. Pure:
no database, no Stripe calls, no Flask.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]


def to_datetime(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(int(unix), UTC)


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(int(unix), UTC)


def object_id(value: Any) -> str | None:
    """An id whether Stripe sent the id or the expanded object."""
    if value is None:
        return None
    if isinstance(value, dict):
        found = value.get("id")
        return str(found) if found else None
    return str(value)


def metadata_of(obj: Json) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in meta.items()}


def frequency_of(meta: dict[str, str]) -> str | None:
    value = meta.get("frequency")
    return value if value in ("once", "month", "year") else None


def currency_of(value: Any) -> str:
    return str(value).lower()


def event_object(event: Json) -> Json:
    obj: Json = event["data"]["object"]
    return obj


def event_created(event: Json) -> datetime:
    return at(event["created"])

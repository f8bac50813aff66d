"""Time as LXD writes it on the wire: RFC 3339 in UTC, year 1 meaning never."""
import datetime
import re

from runtime.errors import BadRequest


def timestamp(ts: float | None = None) -> str:
    """ISO time as LXD writes it; 0 means never (LXD's zero time)."""
    if ts == 0:
        return "0001-01-01T00:00:00Z"
    when = (datetime.datetime.fromtimestamp(ts, datetime.UTC) if ts is not None
            else datetime.datetime.now(datetime.UTC))
    return when.isoformat().replace("+00:00", "Z")


def parse_time(value: object, field: str = "expires_at") -> float:
    """An RFC 3339 timestamp as epoch seconds; LXD's zero time (year 1) means never."""
    if value in (None, "", 0):
        return 0.0
    if not isinstance(value, str):
        raise BadRequest(f"Invalid {field!r}: expected an RFC 3339 timestamp")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python 3.11 accepts at most microseconds: cut nanoseconds down.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"Invalid {field!r} {value!r}: expected an RFC 3339 timestamp")
    if when.year <= 1:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def render_time(ts: float) -> str:
    return timestamp(ts) if ts else "0001-01-01T00:00:00Z"

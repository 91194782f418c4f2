"""ISO weeks: ``"2026-W47"`` is [Monday 00:00 UTC, the next Monday 00:00 UTC)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ..errors import InputError

__all__ = ["IsoWeek", "parse_week"]

_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$")
_EXAMPLE = "e.g. 2026-W47"


@dataclass(frozen=True, slots=True)
class IsoWeek:
    """One ISO 8601 week, in UTC.

    Attributes
    ----------
    year, week : int
        The ISO year and week number (the ISO year may differ from the calendar
        year in the first and last days of January and December).
    start, end : datetime
        Monday 00:00 UTC of this week and of the next (``end`` is exclusive).
    """

    year: int
    week: int
    start: datetime
    end: datetime

    @classmethod
    def of(cls, year: int, week: int) -> IsoWeek:
        """The week ``week`` of ISO year ``year``; `InputError` if it does not exist."""
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise InputError(
                "week",
                f"{year}-W{week:02d} does not exist (ISO year {year} has no week {week}); "
                f"expected YYYY-Www, {_EXAMPLE}",
            ) from None
        start = datetime.combine(monday, time(0), tzinfo=UTC)
        return cls(year, week, start, start + timedelta(days=7))

    @classmethod
    def containing(cls, moment: datetime) -> IsoWeek:
        """The week a (time-zone aware) moment falls in, seen in UTC."""
        if moment.tzinfo is None:
            raise InputError("now", f"{moment.isoformat()} has no time zone; give an aware time")
        iso = moment.astimezone(UTC).isocalendar()
        return cls.of(iso.year, iso.week)

    @property
    def label(self) -> str:
        """``"2026-W47"``."""
        return f"{self.year}-W{self.week:02d}"

    @property
    def days(self) -> str:
        """The dates it covers, e.g. ``"Mon 16 Nov – Sun 22 Nov 2026"``."""
        last = self.end - timedelta(days=1)
        return f"{self.start:%a %d %b} – {last:%a %d %b %Y}"

    def shifted(self, weeks: int) -> IsoWeek:
        """The week ``weeks`` later (earlier when negative)."""
        return IsoWeek.containing(self.start + timedelta(weeks=weeks))

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end

    def __str__(self) -> str:
        return self.label


def parse_week(text: str | None, *, now: datetime | None = None) -> IsoWeek:
    """Parse ``"2026-W47"`` (or ``"2026W47"``); None means the week of ``now``.

    Raises
    ------
    InputError
        Naming ``week``, with an example, when the text is not an ISO week or
        names a week the year does not have (``2025-W53``).
    """
    if text is None:
        return IsoWeek.containing(now or datetime.now(UTC))
    if not isinstance(text, str):
        raise InputError("week", f"expected an ISO week such as 2026-W47; got {text!r}")
    match = _WEEK.match(text.strip().upper())
    if match is None:
        raise InputError("week", f"{text!r} is not an ISO week; expected YYYY-Www, {_EXAMPLE}")
    year, week = int(match.group(1)), int(match.group(2))
    if not 1 <= week <= 53:
        raise InputError("week", f"{text!r}: the week number must be 1 to 53, {_EXAMPLE}")
    return IsoWeek.of(year, week)

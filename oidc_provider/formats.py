"""How dates and times appear to people, one format per kind, in the page's
(or the email's) language and the portal's time zone (TIME_ZONE), so that
every page and email says a date or a time the same way:

- a day: "3 December 2026" / "3 december 2026" (`day`);
- a day of this year: "4 December" / "4 december" (`day_in_year`);
- a time of day: "09:38" (`time_of_day`; "09:38 UTC" only when TIME_ZONE is UTC);
- a moment: "3 December 2026, 09:38" / "3 december 2026 om 09:38" (`moment`);
- a span: "48 hours" / "48 uur" (`duration`); ahead: "in 47 seconds" /
  "over 47 seconden" (`relative`).

Times are stored as naive UTC (`db.now()`); they are shown in TIME_ZONE.

Addresses and phone numbers never break across lines (`unbroken`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from babel import dates, units
from flask import Flask, current_app, has_app_context
from flask_babel import get_locale
from flask_babel import gettext as _
from markupsafe import Markup, escape


def _locale() -> str:
    locale = get_locale()
    return str(locale) if locale is not None else "en"


def _zone() -> str:
    """TIME_ZONE; outside the app (a script, a test of the formats) UTC, said as such."""
    return current_app.config["TIME_ZONE"] if has_app_context() else "UTC"


def local(value: datetime) -> datetime:
    """A stored (naive UTC) time in the portal's time zone."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(_zone()))


def day(value: datetime) -> str:
    """A calendar day: "3 December 2026"."""
    return dates.format_date(local(value), "d MMMM y", locale=_locale())


def day_in_year(value: datetime) -> str:
    """A day of the current year, in a sentence about the next hours: "4 December"."""
    return dates.format_date(local(value), "d MMMM", locale=_locale())


def time_of_day(value: datetime) -> str:
    """A time of day: "09:38" (the portal's zone is the reader's; named only when UTC)."""
    text = dates.format_time(local(value), "HH:mm", locale=_locale())
    return f"{text} UTC" if _zone() in ("UTC", "Etc/UTC") else text


def moment(value: datetime) -> str:
    """A point in time: "3 December 2026, 09:38"."""
    return _("%(day)s, %(time)s", day=day(value), time=time_of_day(value))


def duration(seconds: int) -> str:
    """A span of time in words: "48 hours", "60 minutes", "1 minute", "45 seconds"
    (seconds under two minutes, unless whole minutes)."""
    if seconds % 3600 == 0 and seconds >= 2 * 3600:
        return units.format_unit(seconds // 3600, "duration-hour", locale=_locale())
    if seconds % 60 and seconds < 120:
        return units.format_unit(max(1, seconds), "duration-second", locale=_locale())
    return units.format_unit(seconds // 60, "duration-minute", locale=_locale())


def relative(seconds: int) -> str:
    """A moment ahead, counted from now: "in 47 seconds", "in 3 minutes"."""
    return dates.format_timedelta(
        timedelta(seconds=max(1, seconds)), add_direction=True, threshold=2, locale=_locale()
    )


def unbroken(value: str | None) -> Markup:
    """An email address or phone number that a line never cuts: it moves to
    the next line whole; only an address longer than a whole line wraps."""
    text = value or ""
    css = "address" if "@" in text else "nowrap"
    return Markup('<span class="{}">{}</span>').format(css, escape(text))


def init_app(app: Flask) -> None:
    """The formats as template filters: `|day`, `|moment`, `|time_of_day`, `|unbroken`."""
    app.add_template_filter(day)
    app.add_template_filter(moment)
    app.add_template_filter(time_of_day)
    app.add_template_filter(unbroken)

"""How values appear to people, one format per kind, so that every page and
email says a date or a time the same way (and a translation changes it in
one place): a day ("3 December 2026"), a moment ("3 December 2026, 08:38
UTC"), a time of day ("08:38 UTC"). The provider keeps UTC and says so.

Addresses and phone numbers never break across lines (`unbroken`).
"""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from markupsafe import Markup, escape


def day(moment: datetime) -> str:
    """A calendar day: "3 December 2026"."""
    return f"{moment.day} {moment:%B %Y}"


def day_in_year(moment: datetime) -> str:
    """A day of the current year, in a sentence about the next hours: "4 December"."""
    return f"{moment.day} {moment:%B}"


def time_of_day(moment: datetime) -> str:
    """A time of day: "08:38 UTC"."""
    return f"{moment:%H:%M} UTC"


def moment(value: datetime) -> str:
    """A point in time: "3 December 2026, 08:38 UTC"."""
    return f"{day(value)}, {time_of_day(value)}"


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

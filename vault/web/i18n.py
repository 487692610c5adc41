"""Texts, dates and templates of the patient's space.

Every text lives in the message catalog (locale/<lang>/LC_MESSAGES/messages.po, compiled
to messages.mo beside it); templates and code name texts by key, so another language is a
new catalog and nothing else.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

LOCALE = "fr_FR"
TIMEZONE = ZoneInfo("Europe/Paris")
PACKAGE = Path(str(resources.files("vault.web")))


@lru_cache
def translations(locale: str = LOCALE) -> Translations:
    loaded = Translations.load(str(PACKAGE / "locale"), locales=[locale], domain="messages")
    if not isinstance(loaded, Translations):
        raise RuntimeError(f"The message catalog for {locale} is missing")
    return loaded


def gettext(key: str, **values: Any) -> str:
    text = translations().gettext(key)
    return text % values if values else text


def long_date(value: date | datetime | None) -> str:
    """12 novembre 2026"""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = _local(value).date()
    return format_date(value, format="long", locale=LOCALE)


def long_datetime(value: datetime | None) -> str:
    """12 novembre 2026 à 10:28, in France's time."""
    if value is None:
        return ""
    return format_datetime(_local(value), format=gettext("format.datetime"), locale=LOCALE)


def short_date(value: date | datetime | None) -> str:
    """12/11/2026: in accessible names, where a long date would be read slowly."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = _local(value).date()
    return format_date(value, format="short", locale=LOCALE)


def file_size(size: int) -> str:
    """1,4 Mo: a size as people read it (decimal units, as file managers show them)."""
    for unit, factor in (("go", 10**9), ("mo", 10**6), ("ko", 10**3)):
        if size >= factor:
            number = format_decimal(size / factor, format="#,##0.#", locale=LOCALE)
            return gettext(f"size.{unit}", number=number)
    return gettext("size.o", number=str(size))


def _local(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(TIMEZONE)


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@lru_cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(PACKAGE / "templates")),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(), newstyle=True)  # type: ignore[attr-defined]
    env.filters["long_date"] = long_date
    env.filters["long_datetime"] = long_datetime
    env.filters["short_date"] = short_date
    return env

"""What the e-mails say, in French, keyed by event, from the e-mails' message catalog
(``locale/<lang>/LC_MESSAGES/emails.po``, compiled to ``emails.mo`` beside it).

Every text is fixed: an e-mail never names a document, a professional, a diagnosis or an
identifier, since a mailbox is neither private nor encrypted. The patient reads the
details in their space. The only variable parts are links (the space, the confirmation,
the opt-out) and the confirmation's validity in hours. Each ``(kind, part)`` is one
message id: ``new-document.subject``, ``new-document.body``, ..., the shared
``signature``, and ``address-confirmation.subject`` and ``.body``.

The catalog is the notifications' own (the web's pages have theirs, vault/web/locale):
this package imports nothing of the HTTP surface, and a translator finds every e-mail in
one file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from babel.support import Translations

# The events a patient may choose to hear about by e-mail, in the order the API lists them.
EVENT_KINDS: tuple[str, ...] = (
    "new-document",
    "new-reader",
    "emergency-access",
    "delegation-used",
    "delegation-granted",
    "export-ready",
    "space-closed",
    "space-deleted",
)
# What a patient who gives an address hears about until they choose otherwise.
DEFAULT_EVENTS: tuple[str, ...] = EVENT_KINDS
CONFIRMATION = "address-confirmation"
LOCALE = "fr_FR"
DOMAIN = "emails"
LOCALE_DIR = Path(str(resources.files("vault.notifications"))) / "locale"


class MissingText(LookupError):
    """A message id the catalog does not hold: a packaging mistake, never sent as is."""


@lru_cache
def translations(locale: str = LOCALE) -> Translations:
    loaded = Translations.load(str(LOCALE_DIR), locales=[locale], domain=DOMAIN)
    if not isinstance(loaded, Translations):
        raise RuntimeError(f"The e-mails' message catalog for {locale} is missing")
    return loaded


def text(key: str, **values: Any) -> str:
    found = translations().gettext(key)
    if found == key:
        raise MissingText(key)
    return found % values if values else found


@dataclass(frozen=True)
class Template:
    subject: str
    body: str


class _Catalog(Mapping[str, Template]):
    """The event kinds' templates, read from the catalog: ``TEMPLATES[kind].subject``."""

    def __getitem__(self, kind: str) -> Template:
        if kind not in EVENT_KINDS:
            raise KeyError(kind)
        return Template(text(f"{kind}.subject"), text(f"{kind}.body"))

    def __iter__(self) -> Iterator[str]:
        return iter(EVENT_KINDS)

    def __len__(self) -> int:
        return len(EVENT_KINDS)

    def __contains__(self, kind: object) -> bool:
        return kind in EVENT_KINDS


TEMPLATES: Mapping[str, Template] = _Catalog()


def __getattr__(name: str) -> Template:
    # ``CONFIRMATION_TEMPLATE``, read from the catalog as ``TEMPLATES`` are.
    if name == "CONFIRMATION_TEMPLATE":
        return Template(text(f"{CONFIRMATION}.subject"), text(f"{CONFIRMATION}.body"))
    raise AttributeError(name)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


def render(kind: str, *, space_url: str, unsubscribe_url: str) -> Rendered:
    template = TEMPLATES[kind]
    signature = text("signature", space_url=space_url, unsubscribe_url=unsubscribe_url)
    return Rendered(template.subject, template.body + signature)


def render_confirmation(*, confirm_url: str, hours: int) -> Rendered:
    return Rendered(
        text(f"{CONFIRMATION}.subject"),
        text(f"{CONFIRMATION}.body", confirm_url=confirm_url, hours=hours),
    )

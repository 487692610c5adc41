"""The e-mails' texts come from their message catalog: every event kind renders in French
from it, the compiled catalog the package ships is the one its source says, and no text
has room for anything but links (so no e-mail can carry health data)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from vault.notifications import templates

LOCALE = Path(templates.__file__).resolve().parent / "locale" / "fr" / "LC_MESSAGES"
PO = LOCALE / "emails.po"
MO = LOCALE / "emails.mo"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
SPACE = "https://vault.test/"
UNSUBSCRIBE = "https://vault.test/courriel/desinscription?record=r&token=t"


def source() -> dict[str, str]:
    with PO.open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    return {message.id: message.string for message in catalog if message.id}


def test_the_compiled_catalog_matches_its_source():
    """The check chosen over compiling in the test command: a stale emails.mo fails here,
    and the fix is the pybabel command written at the top of emails.po."""
    with MO.open("rb") as handle:
        shipped = {message.id: message.string for message in read_mo(handle) if message.id}
    assert shipped == source()


def test_every_catalog_text_is_used_and_translated():
    expected = {f"{kind}.{part}" for kind in templates.EVENT_KINDS for part in ("subject", "body")}
    expected |= {"signature", f"{templates.CONFIRMATION}.subject", f"{templates.CONFIRMATION}.body"}
    texts = source()
    assert set(texts) == expected
    assert [key for key, value in texts.items() if not value.strip()] == []


@pytest.mark.parametrize("kind", templates.EVENT_KINDS)
def test_every_kind_renders_in_french_from_the_catalog(kind):
    texts = source()
    rendered = templates.render(kind, space_url=SPACE, unsubscribe_url=UNSUBSCRIBE)
    assert rendered.subject == texts[f"{kind}.subject"] != f"{kind}.subject"
    assert rendered.text.startswith(texts[f"{kind}.body"])
    assert rendered.text.startswith("Bonjour,\n")
    assert "Ce message ne contient aucune donnée de santé." in rendered.text
    assert SPACE in rendered.text
    assert UNSUBSCRIBE in rendered.text
    assert "%(" not in rendered.text
    assert templates.TEMPLATES[kind].subject == rendered.subject


def test_the_confirmation_renders_from_the_catalog():
    rendered = templates.render_confirmation(confirm_url="https://vault.test/c?token=x", hours=48)
    assert rendered.subject == source()["address-confirmation.subject"]
    assert "(valable 48 heures)" in rendered.text
    assert "https://vault.test/c?token=x" in rendered.text


def test_a_text_has_room_for_links_and_hours_only():
    """No template can be given a title, a name or an identifier to show."""
    allowed = {"space_url", "unsubscribe_url", "confirm_url", "hours"}
    for key, value in source().items():
        assert set(PLACEHOLDER.findall(value)) <= allowed, key
        assert "%" not in PLACEHOLDER.sub("", value), key


def test_space_closed_and_space_deleted_are_events_a_patient_may_choose():
    assert {"space-closed", "space-deleted"} <= set(templates.EVENT_KINDS)
    assert "supprimées" in templates.TEMPLATES["space-deleted"].subject


def test_an_unknown_kind_or_a_missing_text_is_an_error_not_an_english_key():
    with pytest.raises(KeyError):
        templates.render("not-a-kind", space_url=SPACE, unsubscribe_url=UNSUBSCRIBE)
    with pytest.raises(templates.MissingText):
        templates.text("no-such.subject")

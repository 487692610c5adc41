"""Every text of the space comes from the message catalog, and the compiled catalog the
package ships is the one its source says."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parents[2] / "vault" / "web"
PO = WEB / "locale" / "fr" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
KEY = re.compile(r"""_\(\s*["']([a-z0-9_.:-]+)["']""")
CODE_KEY = re.compile(r"""gettext\(\s*["']([a-z0-9_.:-]+)["']""")


def catalog():
    with PO.open("rb") as handle:
        return read_po(handle, locale="fr")


def test_the_compiled_catalog_matches_its_source():
    source = catalog()
    with MO.open("rb") as handle:
        shipped = read_mo(handle)
    expected = {message.id: message.string for message in source if message.id}
    assert {message.id: message.string for message in shipped if message.id} == expected


def test_every_text_the_templates_and_pages_name_is_in_the_catalog():
    known = {message.id for message in catalog() if message.id}
    used = set()
    for template in (WEB / "templates").glob("*.html"):
        used |= set(KEY.findall(template.read_text()))
    for module in WEB.glob("*.py"):
        used |= set(CODE_KEY.findall(module.read_text()))
    # A key ending in "." is a prefix the template completes ("role." ~ role).
    prefixes = {key for key in used if key.endswith(".")}
    assert used
    assert sorted(used - known - prefixes) == []
    for prefix in prefixes:
        assert any(key.startswith(prefix) for key in known), prefix


def test_every_catalog_text_is_translated():
    assert [message.id for message in catalog() if message.id and not message.string] == []

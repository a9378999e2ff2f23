"""The Dutch catalog is complete and current: every sentence marked in the
package and the templates, extracted afresh, has a Dutch translation (none
fuzzy, none empty, every plural form), the catalog keeps nothing that no
longer exists, and the compiled .mo the portal reads is the .po."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "oidc_provider" / "translations"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """messages.pot extracted now from the current sources, as `make translations` does."""
    pot = tmp_path_factory.mktemp("catalog") / "messages.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "N_", "--no-location"]
        + ["-o", str(pot), str(ROOT)]
    )
    with pot.open("rb") as f:
        return read_po(f)


def _po(language: str):
    with (CATALOGS / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=language)


def _key(message):
    return tuple(message.id) if isinstance(message.id, (list, tuple)) else message.id


def _forms(message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


def test_the_sources_mark_sentences_for_translation(template):
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
    assert len(ids) > 250  # pages, emails, SMS and the Python sentences
    assert "Sign in" in ids and "Forgot your password?" in ids


def test_every_msgid_has_a_dutch_translation(template):
    dutch = _po("nl")
    missing, fuzzy = [], []
    for message in template:
        if not message.id:
            continue
        translated = dutch.get(message.id)
        if translated is None or not all(form.strip() for form in _forms(translated)):
            missing.append(message.id)
        elif translated.fuzzy:
            fuzzy.append(message.id)
    assert missing == [], f"{len(missing)} msgids without Dutch: run `make translations` and translate them"
    assert fuzzy == [], "fuzzy translations are guesses: check them and remove the fuzzy flag"


def test_the_dutch_catalog_has_no_stale_msgids(template):
    dutch = _po("nl")
    current = {_key(m) for m in template if m.id}
    stale = [m.id for m in dutch if m.id and _key(m) not in current]
    assert stale == [], "translations of sentences no longer in the sources: run `make translations`"
    assert not dutch.obsolete


def test_dutch_plurals_have_both_forms():
    dutch = _po("nl")
    assert dutch.num_plurals == 2
    for message in dutch:
        if message.pluralizable:
            assert len(_forms(message)) == 2 and all(_forms(message)), message.id


def test_translations_keep_every_placeholder():
    """A translation that drops or renames %(name)s would fail when rendered."""
    for message in _po("nl"):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set().union(*(set(PLACEHOLDER.findall(i)) for i in ids))
        for form in _forms(message):
            assert set(PLACEHOLDER.findall(form)) <= wanted | {"num"}, message.id
            if not isinstance(message.id, tuple):
                assert set(PLACEHOLDER.findall(form)) == wanted, message.id


def test_the_compiled_catalog_is_the_po():
    """The .mo is committed so a fresh checkout runs as is: it must say what the .po says."""
    dutch = _po("nl")
    with (CATALOGS / "nl" / "LC_MESSAGES" / "messages.mo").open("rb") as f:
        compiled = read_mo(f)
    expected = {_key(m): tuple(_forms(m)) for m in dutch if m.id}
    found = {_key(m): tuple(_forms(m)) for m in compiled if m.id}
    assert found == expected, "run `make translations` to compile the catalog"

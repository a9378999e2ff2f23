"""The accessibility check itself: every photographed page is checked with
axe-core for WCAG 2.2 AA (people.Screens), and a serious or critical
violation fails the test that shows the page. Here a page with known
violations proves the check can fail, and one without passes."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from .people import AccessibilityError, Screens


def test_a_page_with_serious_violations_fails_the_screenshot_check(page: Page, shots: Screens):
    page.set_content(
        '<!doctype html><html><head><title>Broken</title></head><body><main>'
        '<h1>Broken on purpose</h1><img src="/x.png">'
        '<form><input type="text" name="nameless"><button></button></form>'
        '<p style="color:#bbb;background:#fff">Too pale to read</p></main></body></html>'
    )
    with pytest.raises(AccessibilityError) as failed:
        shots("broken-on-purpose")
    report = str(failed.value)
    for rule in ("image-alt", "label", "button-name", "color-contrast"):
        assert rule in report, report


def test_a_page_without_violations_passes(page: Page, shots: Screens):
    page.set_content(
        '<!doctype html><html lang="en"><head><title>Fine</title></head><body><main>'
        '<h1>Fine</h1><label for="n">Name</label><input id="n" autocomplete="name">'
        '<button type="button">Go</button></main></body></html>'
    )
    shots("fine")

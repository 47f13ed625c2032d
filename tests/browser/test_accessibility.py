"""Accessibility in Chromium: axe-core (vendored, tests/browser/vendor/)
finds no WCAG 2.1 A/AA or best-practice violation on the donation form (as
it loads and with errors), the sandbox checkout, the thanks page, the 429
page and /manage (once built), in English and in Russian; and a reader
completes a gift with the keyboard alone, every stop showing its focus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.conftest import CHROMIUM_ARGS

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
LANGUAGES = {"en": "en-US", "ru": "ru-RU"}
PREFIX = {"en": "", "ru": "/ru"}
THANKS_HEADING = {"en": "Thank you!", "ru": "Спасибо!"}


@pytest.fixture
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser, language: str) -> Page:
    context = browser.new_context(
        locale=LANGUAGES[language], extra_http_headers={"Accept-Language": language}
    )
    context.set_default_timeout(10_000)
    return context.new_page()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe.run on the page as it stands. Evaluated through the DevTools
    protocol, which the page's CSP (no inline script) does not govern."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        """async (tags) => await axe.run(document, {
            runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})""",
        AXE_TAGS,
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [node["target"] for node in v["nodes"]][:5],
        }
        for v in result["violations"]
    ]


def assert_accessible(page: Page, where: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"axe-core on {where} ({page.url}): {violations}"


def test_the_vendored_axe_is_the_noted_version() -> None:
    head = AXE.read_text(encoding="utf-8")[:40]
    assert "axe v4.14.1" in head
    assert "4.14.1" in (AXE.parent / "README.md").read_text(encoding="utf-8")


def test_axe_runs_and_would_see_a_violation(served: str, browser: Browser) -> None:
    """The harness itself: an image planted without alt text is reported."""
    page = new_page(browser, "en")
    page.goto(f"{served}/donate")
    page.evaluate(
        """() => { const img = document.createElement("img");
                   img.src = "/static/none.png"; document.querySelector("main").append(img); }"""
    )
    assert [v["id"] for v in axe_violations(page)] == ["image-alt"]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_form_the_checkout_and_the_thanks_page_pass_axe(
    served: str, browser: Browser, language: str, artifacts: Path
) -> None:
    page = new_page(browser, language)
    prefix = PREFIX[language]
    page.goto(f"{served}{prefix}/donate?currency=eur&frequency=once")
    expect(page.locator("html")).to_have_attribute("lang", language)
    assert_accessible(page, "the form")

    # Every error at once: no amount, a bad email, no name.
    page.fill("#amount", "")
    page.fill("#email", "not an address")
    page.click("#give")
    expect(page.locator(".errors-summary")).to_be_visible()
    page.screenshot(path=str(artifacts / f"form-errors-{language}.png"), full_page=True)
    assert_accessible(page, "the form with errors")

    page.fill("#amount", "25")
    page.fill("#email", f"axe.{language}@example.org")
    page.fill("#name", "Ada Reader")
    page.click("#give")
    page.wait_for_url("**/sandbox/checkout/**")
    assert_accessible(page, "the sandbox checkout")

    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{prefix}/donate/thanks**")
    expect(page.locator("h1")).to_have_text(THANKS_HEADING[language])
    page.screenshot(path=str(artifacts / f"thanks-{language}.png"), full_page=True)
    assert_accessible(page, "the thanks page")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_gift_can_be_given_with_the_keyboard_alone(
    served: str, browser: Browser, language: str
) -> None:
    page = new_page(browser, language)
    prefix = PREFIX[language]
    page.goto(f"{served}{prefix}/donate?currency=eur")

    page.keyboard.press("Tab")
    assert focused(page, "a.skip"), "the first stop is the skip link"
    assert focus_is_visible(page)
    page.keyboard.press("Enter")  # to the main content
    # "How often": into the radio group, then the arrow keys choose "Monthly".
    tab_to(page, "input[name=frequency]")
    page.keyboard.press("ArrowRight")
    expect(page.locator("input[name=frequency][value=month]")).to_be_checked()
    tab_to(page, "#amount")
    page.keyboard.type("30")
    tab_to(page, "#email")
    page.keyboard.type(f"keys.{language}@example.org")
    tab_to(page, "#name")
    page.keyboard.type("Kim Keyboard")
    tab_to(page, "#cover_fees")
    page.keyboard.press("Space")
    expect(page.locator("#cover_fees")).to_be_checked()
    tab_to(page, "#give")
    page.keyboard.press("Enter")

    page.wait_for_url("**/sandbox/checkout/**")
    tab_to(page, "input[name=card_number]")
    page.keyboard.type("4242 4242 4242 4242")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{prefix}/donate/thanks**")
    expect(page.locator("h1")).to_have_text(THANKS_HEADING[language])


def focused(page: Page, selector: str) -> bool:
    return bool(page.evaluate("(s) => document.activeElement.matches(s)", selector))


def focus_is_visible(page: Page) -> bool:
    style = page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
                   return [s.outlineStyle, s.outlineWidth]; }"""
    )
    return bool(style[0] != "none" and style[1] not in ("0px", ""))


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Tab forward until `selector` has the focus; every stop on the way must
    show where the focus is."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        assert focus_is_visible(page), page.evaluate("() => document.activeElement.outerHTML")
        if focused(page, selector):
            return
    pytest.fail(f"{selector} was not reached with Tab")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_manage_pages_pass_axe(served: str, browser: Browser, language: str) -> None:
    """/manage: the email form and the answer to it."""
    page = new_page(browser, language)
    page.goto(f"{served}{PREFIX[language]}/manage")
    expect(page.locator("html")).to_have_attribute("lang", language)
    assert_accessible(page, "the manage form")
    page.fill("input[type=email]", f"manage.{language}@example.org")
    page.locator("input[type=email]").press("Enter")
    page.wait_for_load_state()
    expect(page.locator("html")).to_have_attribute("lang", language)
    assert_accessible(page, "the manage form's answer")


@pytest.mark.settings(DONOR_FORM_LIMIT_PER_ADDRESS="1 per minute")
@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_too_many_requests_page_passes_axe(
    served: str, browser: Browser, language: str
) -> None:
    page = new_page(browser, language)
    statuses = []
    for _attempt in range(2):
        page.goto(f"{served}{PREFIX[language]}/donate?currency=eur")
        page.fill("#amount", "25")
        page.fill("#email", f"limit.{language}@example.org")
        page.fill("#name", "Ada Reader")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("#give")
        statuses.append(answer.value.status)
        page.wait_for_load_state()
    assert statuses == [303, 429]
    expect(page.locator("html")).to_have_attribute("lang", language)
    assert_accessible(page, "the 429 page")

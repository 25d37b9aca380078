"""Content-Security-Policy (config/settings.py CONTENT_SECURITY_POLICY, django-csp) is enforced.
That every page sends it and runs under it without a violation is checked page by page, for
each role, in test_every_page.py (with LISTEN below); here: a script slipped into a page does
not run."""

import pytest

from tests.browser.conftest import logged_in

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

LIST = "/crm/automation/"
# Chromium raises this event for every blocked script, style, image, frame, form or connection.
LISTEN = """document.addEventListener("securitypolicyviolation", (e) => {
  (window.__cspViolations = window.__cspViolations || []).push(
    `${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.sourceFile || document.URL}:${e.lineNumber}`);
});"""


def test_an_inline_script_is_refused(page, live_server, owner):
    """The policy is really enforced: a script slipped into a page does not run (and is reported)."""
    page.add_init_script(LISTEN)
    logged_in(page, live_server, owner.username, next_url=LIST)
    page.evaluate("""() => {
        const s = document.createElement("script");
        s.textContent = "window.__ran = true";
        document.body.appendChild(s);
    }""")
    assert page.evaluate("window.__ran === true") is False
    assert any(v.startswith("script-src") for v in page.evaluate("window.__cspViolations || []"))

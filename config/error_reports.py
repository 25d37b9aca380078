"""The DEBUG error page (and error emails) without credentials.

Django hides settings and request.META entries whose *name* looks secret (KEY, PASS, TOKEN …).
The dev server's META holds the process environment, so DATABASE_URL=postgres://crm:pw@db/crm was
shown as it is, and so was a Redis URL nested in Q_CLUSTER. Here the names of connection URLs
are hidden too, and any value that carries a password — a URL's `user:password@` or a libpq
DSN's `password=…` — is shown with the password masked, wherever it appears: settings, META,
the exception's message and the traceback's local variables.

Settings: DEFAULT_EXCEPTION_REPORTER_FILTER and DEFAULT_EXCEPTION_REPORTER (config/settings.py).
"""

import re

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

MASK = "********************"
# scheme://user:password@host (the user may be empty: redis://:password@host)
URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/?#@'\"]*:)(?P<password>[^\s@/'\"]+)(?=@)", re.I)
# password=… in a DSN ("host=db password=pw"), a query string (?password=pw&…) or a keyword list
DSN_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<password>'[^']*'|\"[^\"]*\"|[^\s&;,'\")]+)",
                          re.I)


def mask(text: str) -> str:
    """`text` with every password in a URL or a DSN replaced by the mask."""
    text = URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return DSN_PASSWORD.sub(lambda m: m["head"] + MASK, text)


class MaskingFilter(SafeExceptionReporterFilter):
    """Django's filter, plus connection-URL names hidden and passwords in any value masked."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE"  # Django's own list
        "|DSN|DATABASE_URL|REDIS_URL|BROKER_URL|CACHE_URL|EMAIL_URL|CREDENTIAL", flags=re.I)

    def cleanse_setting(self, key, value):
        if isinstance(value, str):  # also lazy strings: the value itself is kept when nothing is masked
            masked = mask(str(value))
            value = masked if masked != str(value) else value
        return super().cleanse_setting(key, value)


class MaskingReporter(ExceptionReporter):
    """Masks what the filter does not see: the exception's message, the traceback's variables
    (already rendered as text here, so a DSN inside a dict or an object's repr is masked too) and
    its source lines."""

    def get_traceback_data(self) -> dict:
        data = super().get_traceback_data()
        for frame in data.get("frames", []):
            if "vars" in frame:
                frame["vars"] = [(name, mask(value)) for name, value in frame["vars"]]
            # The source lines too: a DSN written in the code is as secret as one in a variable.
            for key in ("pre_context", "post_context"):
                if frame.get(key):
                    frame[key] = [mask(line) for line in frame[key]]
            if isinstance(frame.get("context_line"), str):
                frame["context_line"] = mask(frame["context_line"])
        if isinstance(data.get("exception_value"), str):
            data["exception_value"] = mask(data["exception_value"])
        return data

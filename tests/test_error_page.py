"""The DEBUG error page shows no credentials: DATABASE_URL and REDIS_URL in the environment the
dev server puts in request.META, a Redis URL nested in a setting, a DSN in the exception's message
or in a local variable — each is shown with its password masked (config/error_reports.py)."""

import pytest
from django.test import Client
from django.urls import path
from django.views.debug import get_default_exception_reporter_filter

from config.error_reports import mask

# Written in halves: the page shows the view's source lines around it (masked too, but a bare word is no URL).
SECRETS = tuple(a + b for a, b in (("hun", "ter2"), ("r3dis", "-pw"), ("s3cret", "-dsn"), ("l0cal", "-pw"),
                                   ("msg", "-pw")))


def explode(request):
    dsn = "host=db port=5432 dbname=crm user=crm password=l0cal-pw"  # a local variable of the failing frame
    options = {"url": "postgresql://crm:l0cal-pw@db:5432/crm"}
    raise RuntimeError(f"could not connect to postgres://crm:msg-pw@db/crm ({len(dsn)}, {len(options)})")


urlpatterns = [path("explode/", explode)]


@pytest.fixture
def error_page(settings):
    settings.DEBUG = True
    settings.ROOT_URLCONF = __name__
    settings.REDIS_URL = "redis://:r3dis-pw@cache:6379/0"
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://default:r3dis-pw@cache:6379/0?socket_timeout=5"}
    settings.SENTRY_CONFIG = {"connection": "host=db user=crm password=s3cret-dsn"}
    get_default_exception_reporter_filter.cache_clear()  # Django keeps the first one it made
    client = Client(raise_request_exception=False)
    # What the dev server puts in META: the process environment.
    environ = {"DATABASE_URL": "postgres://crm:hunter2@db:5432/crm", "REDIS_URL": "redis://:r3dis-pw@cache:6379/1",
               "ANALYTICS": "https://user:hunter2@example.com/x"}
    return client, environ


def test_the_debug_page_masks_urls_and_dsns_with_passwords(error_page):
    client, environ = error_page
    for accept in ("text/html", "text/plain"):  # the HTML page, and the text one API clients get
        response = client.get("/explode/", HTTP_ACCEPT=accept, **environ)
        text = response.content.decode()
        assert response.status_code == 500 and "RuntimeError" in text and "could not connect" in text
        assert not [secret for secret in SECRETS if secret in text], accept
        assert "postgres://crm:********************@db/crm" in text  # the message stays readable
        assert "DATABASE_URL" in text and "REDIS_URL" in text


@pytest.mark.parametrize(("raw", "shown"), [
    ("postgres://crm:pw@db:5432/crm", "postgres://crm:********************@db:5432/crm"),
    ("redis://:pw@cache:6379/0", "redis://:********************@cache:6379/0"),
    ("host=db password='p w' user=x", "host=db password=******************** user=x"),
    ("https://x.example/?user=a&password=pw&b=1", "https://x.example/?user=a&password=********************&b=1"),
    ("sqlite:////var/crm.sqlite3", "sqlite:////var/crm.sqlite3"),
    ("https://example.com/a:b@c", "https://example.com/a:b@c"),  # a path, not a password
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
])
def test_passwords_are_masked_and_the_rest_is_left(raw, shown):
    assert mask(raw) == shown

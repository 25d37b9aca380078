"""Throttles that hold: the client's own X-Forwarded-For is not trusted (the
number of trusted proxies comes from TRUSTED_PROXY_COUNT), every process counts in one shared
cache (Redis with REDIS_URL, else the database cache), and the API's budget is the person's,
whichever credential they use."""

import importlib.util
import os
import subprocess
import sys
import uuid

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import RequestFactory
from knox.models import AuthToken
from rest_framework.test import APIClient

from crm_automation.api.client_address import client_address
from crm_automation.api.throttling import PerPerson
from crm_automation.webhooks.throttling import InboundWebhookThrottle
from tests.test_e2e_qcluster import ROOT, database_url

REDIS_URL = os.environ.get("TEST_THROTTLE_REDIS_URL", "redis://127.0.0.1:6379/13")  # this number is the tests'


@pytest.fixture
def three_a_minute(monkeypatch):
    monkeypatch.setattr(PerPerson, "THROTTLE_RATES", {"per_person": "3/min"})
    monkeypatch.setattr(InboundWebhookThrottle, "THROTTLE_RATES", {"webhook": "3/min"})


@pytest.mark.django_db
def test_a_rotating_forwarded_for_is_still_throttled_on_the_signed_webhook(three_a_minute):
    hook = f"/api/v1/hooks/{uuid.uuid4()}/"
    codes = [APIClient().post(hook, {}, format="json", HTTP_X_FORWARDED_FOR=f"10.0.{n}.1").status_code
             for n in range(5)]
    assert codes[:3] == [404] * 3 and codes[3:] == [429, 429]  # no such endpoint, then no more tries


@pytest.mark.django_db
def test_a_rotating_forwarded_for_is_still_throttled_without_a_token(three_a_minute):
    codes = [APIClient().get("/api/v1/", HTTP_X_FORWARDED_FOR=f"10.0.{n}.1").status_code for n in range(4)]
    assert codes == [200, 200, 200, 429]


def test_the_proxies_entry_is_the_client_when_proxies_are_trusted(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert client_address(request) == "10.1.1.1"  # default: none trusted, the socket address
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client_address(request) == "203.0.113.9"  # what our proxy appended, not what the client wrote
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    assert client_address(request) == "6.6.6.6"


def test_a_session_and_a_token_of_one_person_share_one_budget(owner, three_a_minute):
    _, key = AuthToken.objects.create(user=owner)
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    by_session = APIClient()
    by_session.force_login(owner)
    codes = [by_token.get("/api/v1/me/").status_code, by_session.get("/api/v1/me/").status_code,
             by_token.get("/api/v1/me/").status_code, by_session.get("/api/v1/me/").status_code]
    assert codes == [200, 200, 200, 429]
    _, second = AuthToken.objects.create(user=owner)  # a new token is no new budget either
    assert APIClient(HTTP_AUTHORIZATION=f"Token {second}").get("/api/v1/me/").status_code == 429


def test_the_cache_is_shared_and_its_table_made_by_migrate(db, settings):
    assert settings.CACHES["default"]["BACKEND"] in ("django.core.cache.backends.db.DatabaseCache",
                                                     "django.core.cache.backends.redis.RedisCache")
    assert "django_cache" in connection.introspection.table_names()  # the test database was only migrated
    cache.set("shared", 1)
    assert cache.get("shared") == 1


@pytest.mark.parametrize("redis_url", ["", REDIS_URL], ids=["database", "redis"])  # ids: the URL is per worker
def test_the_settings_pick_redis_when_there_is_one_else_the_database(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    spec = importlib.util.spec_from_file_location("settings_under_test", ROOT / "config" / "settings.py")
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)  # a copy: Django's settings and config.settings stay as they are
    backend = fresh.CACHES["default"]["BACKEND"].rsplit(".", 1)[1]
    assert backend == ("RedisCache" if redis_url else "DatabaseCache")
    assert fresh.REST_FRAMEWORK["NUM_PROXIES"] == 0  # by default the client's X-Forwarded-For is not trusted


@pytest.fixture
def shared_cache(request, settings, transactional_db):
    """The cache the test's own requests count in, and the environment a second process gets to
    count in the same one (committed rows: the other process has its own connection)."""
    env = {**os.environ, "DATABASE_URL": database_url(), "API_THROTTLE_RATE": "3/min"}
    env.pop("REDIS_URL", None)
    if request.param == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": REDIS_URL, "KEY_PREFIX": "crm"}}
        env["REDIS_URL"] = REDIS_URL
    yield env
    cache.clear()


SECOND_PROCESS = ("from django.test import Client; "
                  "print(Client(HTTP_AUTHORIZATION='Token {key}').get('/api/v1/me/').status_code)")


@pytest.mark.slow
@pytest.mark.parametrize("shared_cache", ["database", "redis"], indirect=True)
def test_two_processes_draw_from_one_budget(owner, three_a_minute, shared_cache):
    _, key = AuthToken.objects.create(user=owner)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert [client.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 200]
    other = subprocess.run([sys.executable, "manage.py", "shell", "-c", SECOND_PROCESS.format(key=key)],
                           cwd=ROOT, env=shared_cache, capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr[-3000:]
    assert other.stdout.split()[-1] == "429"  # the budget this process used up is used up there too

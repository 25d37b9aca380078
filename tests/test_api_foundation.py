"""The API's ground rules: tokens, which organization a request acts in, errors, throttling,
and the OpenAPI schema with its docs served from this site."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crm_automation.api.throttling import PerPerson
from crm_automation.crm.models import Membership
from tests.conftest import make_user


def token_client(username: str, password: str = "pw-123456") -> APIClient:
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def test_a_token_for_a_username_and_password_and_nothing_without_one(org, owner):
    owner.set_password("pw-123456")
    owner.save()
    assert APIClient().get("/api/v1/me/").status_code in (401, 403)
    bad = APIClient().post("/api/v1/auth/token/", {"username": "owner", "password": "nope"}, format="json")
    assert bad.status_code == 400
    me = token_client("owner").get("/api/v1/me/").json()
    assert me == {"username": "owner", "organization": org.slug, "role": "admin"}


def test_someone_in_two_organizations_names_one_and_never_reaches_a_stranger(org, other_org, owner):
    owner.set_password("pw-123456")
    owner.save()
    Membership.objects.create(user=owner, organization=other_org, role=Membership.Role.VIEWER)
    client = token_client("owner")
    assert "X-Organization" in client.get("/api/v1/me/").json()
    assert client.get("/api/v1/me/", HTTP_X_ORGANIZATION=other_org.slug).json()["role"] == "viewer"
    stranger = make_user("stranger", None, None)
    stranger.set_password("pw-123456")
    stranger.save()
    assert token_client("stranger").get("/api/v1/me/", HTTP_X_ORGANIZATION=org.slug).status_code == 404


def test_a_request_reads_the_callers_memberships_once(org, other_org, owner):
    """The organization a request acts in and the caller's role there come from one read of the
    memberships, in either organization of a two-organization member, with or without a role check."""
    owner.set_password("pw-123456")
    owner.save()
    Membership.objects.create(user=owner, organization=other_org, role=Membership.Role.VIEWER)
    client = token_client("owner")
    for slug, path, status in ((org.slug, "/api/v1/deals/", 200), (other_org.slug, "/api/v1/deals/", 200),
                               (other_org.slug, "/api/v1/workflows/", 200), (org.slug, "/api/v1/me/", 200)):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path, HTTP_X_ORGANIZATION=slug).status_code == status
        reads = [q["sql"] for q in queries.captured_queries if 'FROM "crm_membership"' in q["sql"]]
        assert len(reads) == 1, (path, slug, reads)


def test_too_many_requests_get_429_with_retry_after(org, owner, monkeypatch):
    monkeypatch.setattr(PerPerson, "THROTTLE_RATES", {"per_person": "3/min"})
    owner.set_password("pw-123456")
    owner.save()
    client = token_client("owner")
    codes = [client.get("/api/v1/me/").status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    assert int(client.get("/api/v1/me/")["Retry-After"]) > 0


@pytest.mark.django_db
def test_the_schema_and_its_docs_are_served_from_this_site(client, owner):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")  # public: no data
    assert schema.status_code == 200 and "/api/v1/auth/token/" in schema.content.decode()
    docs = client.get("/api/v1/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]*)"', docs)
    assert "swagger-ui" in docs and assets  # not `"cdn" not in docs`: the page's random CSRF token can hold "cdn"
    assert all(url.startswith("/static/") for url in assets), assets  # nothing from a CDN

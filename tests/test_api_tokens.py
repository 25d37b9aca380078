"""API tokens that end (django-rest-knox): a new one at each sign-in, stored as a digest,
expiring, listed and revoked by their owner, ended by a password change or a removed membership.
And the token endpoint reads its body with the bounded parser."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.test import APIClient

from crm_automation.crm.models import Membership

TOKEN = "/api/v1/auth/token/"
TOKENS = "/api/v1/auth/tokens/"


def sign_in(username: str = "owner", password: str = "pw-123456") -> dict:
    response = APIClient().post(TOKEN, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def as_token(key: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Token {key}")


def works(key: str) -> bool:
    status = as_token(key).get("/api/v1/me/").status_code
    assert status in (200, 401), status
    return status == 200


def test_each_sign_in_gives_a_new_token_that_expires_and_is_stored_as_a_digest(owner, settings):
    first, second = sign_in(), sign_in()
    assert first["token"] != second["token"] and works(first["token"]) and works(second["token"])
    hours = settings.REST_KNOX["TOKEN_TTL"] / timedelta(hours=1)
    expiry = AuthToken.objects.get(digest__startswith=first["id"]).expiry
    assert abs((expiry - timezone.now()) / timedelta(hours=1) - hours) < 0.1
    with connection.cursor() as cursor:  # the secret is nowhere in the table
        cursor.execute("SELECT * FROM knox_authtoken")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert first["token"] not in stored and second["token"] not in stored


def test_an_expired_token_no_longer_works(owner):
    key = sign_in()["token"]
    AuthToken.objects.filter(user=owner).update(expiry=timezone.now() - timedelta(seconds=1))
    assert not works(key)
    assert not AuthToken.objects.filter(user=owner).exists()  # deleted when it was tried


def test_a_request_reads_only_its_own_token_and_a_sign_in_clears_the_expired_ones(owner):
    """The other expired tokens of the person go at their next sign-in, not at every request
    (knox's own authentication reads all of them each time)."""
    stale, key = sign_in()["token"], sign_in()["token"]
    AuthToken.objects.filter(user=owner, token_key=stale[:CONSTANTS.TOKEN_KEY_LENGTH]).update(
        expiry=timezone.now() - timedelta(seconds=1))
    with CaptureQueriesContext(connection) as queries:
        assert works(key)
    assert not any("knox_authtoken" in q["sql"] and "user_id" in q["sql"].split("WHERE")[-1]
                   for q in queries.captured_queries), [q["sql"] for q in queries.captured_queries]
    assert AuthToken.objects.filter(user=owner).count() == 2  # the stale one is still there ...
    sign_in()
    assert AuthToken.objects.filter(user=owner).count() == 2  # ... until the next sign-in
    assert not works(stale) and works(key)


def test_a_person_lists_and_revokes_their_own_tokens(owner, outsider):
    first, second = sign_in(), sign_in()
    listed = as_token(first["token"]).get(TOKENS).json()
    assert [(t["id"], t["current"]) for t in listed] == [(second["id"], False), (first["id"], True)]
    assert all(first["token"].startswith(t["starts_with"]) or second["token"].startswith(t["starts_with"])
               for t in listed)
    stranger = as_token(sign_in("outsider")["token"])
    assert stranger.delete(f"{TOKENS}{first['id']}/").status_code == 404  # not theirs to name
    assert works(first["token"])
    assert as_token(second["token"]).delete(f"{TOKENS}{first['id']}/").status_code == 204
    assert not works(first["token"]) and works(second["token"])
    assert as_token(second["token"]).delete(f"{TOKENS}{first['id']}/").status_code == 404  # already gone


def test_a_person_signs_out_every_client_at_once(owner, outsider):
    keys = [sign_in()["token"] for _ in range(3)]
    theirs = sign_in("outsider")["token"]
    assert as_token(keys[0]).delete(TOKENS).status_code == 204
    assert not any(works(key) for key in keys) and works(theirs)


def test_a_session_lists_the_tokens_too(client, owner):
    sign_in()
    client.force_login(owner)
    (token,) = client.get(TOKENS).json()
    assert token["current"] is False


def test_a_password_change_ends_every_token(owner, teammate):
    key, kept = sign_in()["token"], sign_in("teammate")["token"]
    owner.set_password("a-new-pw-789")
    owner.save()
    assert not works(key) and works(kept)
    assert works(sign_in(password="a-new-pw-789")["token"])


def test_a_removed_membership_ends_the_tokens(org, other_org, owner):
    Membership.objects.create(user=owner, organization=other_org, role=Membership.Role.VIEWER)
    key = sign_in()["token"]
    assert as_token(key).get("/api/v1/me/", HTTP_X_ORGANIZATION=other_org.slug).status_code == 200
    Membership.objects.filter(user=owner, organization=other_org).delete()
    assert not works(key)
    fresh = sign_in()["token"]  # still a member of acme: a new sign-in works there, not in rival
    assert works(fresh)
    assert as_token(fresh).get("/api/v1/me/", HTTP_X_ORGANIZATION=other_org.slug).status_code == 404


def test_a_membership_moved_to_another_organization_ends_the_tokens(other_org, owner):
    key = sign_in()["token"]
    membership = Membership.objects.get(user=owner)
    membership.organization = other_org
    membership.save()
    assert not works(key)


def test_signing_in_beyond_the_cap_ends_the_oldest_token(owner, settings):
    settings.API_TOKENS_PER_USER = 2
    oldest, middle, newest = (sign_in()["token"] for _ in range(3))
    assert not works(oldest) and works(middle) and works(newest)
    assert AuthToken.objects.filter(user=owner).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "says"), [
    ("[" * 100_000, "nest"),
    ('{"username": "owner"', "JSON parse error"),
    ('{"username": "owner"}', "password"),
])
def test_an_unreadable_or_incomplete_body_is_a_400_that_says_why(body, says):
    response = APIClient().post(TOKEN, body, content_type="application/json")
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not AuthToken.objects.exists()


def test_the_schema_documents_signing_in_and_the_tokens(client, db):
    paths = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    assert {"/api/v1/auth/token/", "/api/v1/auth/tokens/", "/api/v1/auth/tokens/{public_id}/"} <= set(paths)
    assert "429" in paths["/api/v1/auth/token/"]["post"]["responses"]
    assert set(paths["/api/v1/auth/tokens/"]) >= {"get", "delete"}


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["\xe9\xe9", "abc\x00def", "z" * 64, "a" * 63])
def test_a_malformed_key_is_a_401_not_a_500(key):
    response = APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/me/")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}

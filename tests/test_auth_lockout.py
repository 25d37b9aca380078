"""Brute-force protection: too many failed sign-ins for one username, or from
one address, lock further sign-ins out (the right password too) on the API's token endpoint and
on the admin's login, with a clear message and a logged event (django-axes, api/login_guard.py)."""

import logging

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

TOKEN = "/api/v1/auth/token/"
LIMIT = 3


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


def sign_in(password: str, *, username: str = "owner", address: str = "203.0.113.7", **headers):
    return APIClient().post(TOKEN, {"username": username, "password": password}, format="json",
                            REMOTE_ADDR=address, **headers)


def test_one_username_is_locked_out_whichever_address_guesses(owner):
    codes = [sign_in("wrong", address=f"198.51.100.{n}").status_code for n in range(LIMIT)]
    assert codes == [400] * (LIMIT - 1) + [429]  # the failure that reaches the limit is refused already
    refused = sign_in("pw-123456", address="192.0.2.50")  # the right password, from a fresh address
    assert refused.status_code == 429
    assert "Too many failed sign-in attempts" in refused.json()["detail"]
    assert int(refused["Retry-After"]) == 15 * 60
    assert sign_in("pw-123456", username="teammate", address="192.0.2.50").status_code == 400  # no such user here


def test_one_address_is_locked_out_whichever_usernames_it_tries(owner, teammate):
    for name in ("alice", "bob", "carol"):
        sign_in("wrong", username=name)
    assert sign_in("pw-123456").status_code == 429  # owner's right password, from the spraying address
    assert sign_in("pw-123456", username="teammate").status_code == 429
    assert sign_in("pw-123456", address="192.0.2.50").status_code == 200  # the account itself is fine


def test_a_rotating_forwarded_for_does_not_escape_the_lockout(owner):
    for n in range(LIMIT):
        sign_in("wrong", username=f"user{n}", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert sign_in("pw-123456", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_the_admin_login_locks_out_with_a_page_that_says_why(client, owner):
    def post(password: str):
        return client.post("/admin/login/?next=/admin/", {"username": "owner", "password": password})

    assert post("wrong").status_code == 200  # the form again, with its error
    for _ in range(LIMIT - 1):
        post("wrong")
    locked = post("pw-123456")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert "Sign-in paused" in locked.content.decode()
    assert "_auth_user_id" not in client.session  # not signed in, the right password notwithstanding
    # The API refuses the same person too: one count for every way in.
    assert sign_in("pw-123456", address="127.0.0.1").status_code == 429


def test_a_lockout_is_logged_with_the_username_and_address(owner, caplog):
    with caplog.at_level(logging.WARNING, logger="crm_automation.auth"):
        for _ in range(LIMIT):
            sign_in("wrong")
    (line,) = [r for r in caplog.records if r.name == "crm_automation.auth"]
    assert "locked out" in line.getMessage() and "'owner'" in line.getMessage()
    assert (line.username, line.address, line.path) == ("owner", "203.0.113.7", TOKEN)


def test_an_administrator_lifts_a_lockout(owner):
    for _ in range(LIMIT):
        sign_in("wrong", address="192.0.2.1")
    assert sign_in("pw-123456").status_code == 429
    call_command("axes_reset_username", "owner")
    assert sign_in("pw-123456").status_code == 200


def test_a_signed_in_person_is_not_counted(owner):
    for _ in range(LIMIT + 2):
        assert sign_in("pw-123456").status_code == 200

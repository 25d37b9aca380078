"""Token scopes for the MCP server, asked for at sign-in or for a new token, listed with the
token, never more than the token making another holds; the MCP call log, read by the
organization's admins only (the API and the admin), each organization its own."""

import pytest
from rest_framework.test import APIClient

from crm_automation.api.mcp_server.audit import cleaned
from crm_automation.api.models import McpCall, TokenScopes
from tests.test_api_tokens import TOKEN, TOKENS, as_token, sign_in


def test_a_sign_in_may_ask_for_scopes_and_the_list_shows_them(owner):
    plain = sign_in()
    scoped = APIClient().post(TOKEN, {"username": "owner", "password": "pw-123456", "scopes": ["run", "read"]},
                              format="json").json()
    assert plain["scopes"] == ["read"] and scoped["scopes"] == ["read", "run"]  # in SCOPES' order
    listed = {t["id"]: t["scopes"] for t in as_token(plain["token"]).get(TOKENS).json()}
    assert listed == {plain["id"]: ["read"], scoped["id"]: ["read", "run"]}
    assert TokenScopes.objects.count() == 1  # a token without scopes has no row


@pytest.mark.parametrize("scopes, words", [(["admin"], "unknown scope “admin”"), ([], "at least one of"),
                                           ("read", "a list of scopes")])
def test_a_bad_scope_is_a_400_that_says_why_and_makes_no_token(owner, scopes, words):
    response = APIClient().post(TOKEN, {"username": "owner", "password": "pw-123456", "scopes": scopes}, format="json")
    assert response.status_code == 400 and words in response.json()["scopes"][0]
    assert not owner.auth_token_set.exists()


def test_a_token_makes_tokens_with_only_the_scopes_it_holds(owner):
    reader = sign_in()["token"]
    refused = as_token(reader).post(TOKENS, {"scopes": ["read", "run"]}, format="json")
    assert refused.status_code == 400 and "does not hold the “run” scope" in refused.json()["scopes"][0]
    made = as_token(reader).post(TOKENS, {"scopes": ["read"]}, format="json")
    assert made.status_code == 200 and made.json()["scopes"] == ["read"]
    client = APIClient()
    client.force_login(owner)  # a signed-in person (a session) makes any
    from_session = client.post(TOKENS, {"scopes": ["read", "draft", "run"]}, format="json")
    assert from_session.status_code == 200, from_session.content
    assert from_session.json()["scopes"] == ["read", "draft", "run"]


def test_a_scoped_token_cannot_make_an_unscoped_one_nor_revoke_every_token(owner):
    scoped = APIClient().post(TOKEN, {"username": "owner", "password": "pw-123456", "scopes": ["read"]},
                              format="json").json()["token"]
    made = as_token(scoped).post(TOKENS, {}, format="json")  # asks for no scopes: gets its maker's, not none
    assert made.status_code == 200 and made.json()["scopes"] == ["read"]
    assert as_token(made.json()["token"]).post("/api/v1/workflows/", {}, format="json").status_code == 403
    before = owner.auth_token_set.count()
    refused = as_token(scoped).delete(TOKENS)
    assert refused.status_code == 403 and "revokes only itself" in refused.json()["detail"]
    assert owner.auth_token_set.count() == before


def log(org, user, tool="search", outcome="ok"):
    return McpCall.objects.create(organization=org, user=user, token_id="abc", transport="http", tool=tool,
                                  arguments={"query": "x"}, outcome=outcome)


def test_the_log_is_for_the_organizations_admins_newest_first(org, other_org, owner, teammate, viewer, outsider):
    first, second = log(org, teammate), log(org, teammate, "fetch", "refused")
    log(other_org, outsider, "get_run")
    client = APIClient()
    client.force_authenticate(owner)
    page = client.get("/api/v1/mcp-calls/").json()
    assert [row["id"] for row in page["results"]] == [second.pk, first.pk]
    assert page["results"][0] == {**page["results"][0], "tool": "fetch", "outcome": "refused", "user": "teammate",
                                  "arguments": {"query": "x"}, "transport": "http"}
    for person in (teammate, viewer):
        client.force_authenticate(person)
        assert client.get("/api/v1/mcp-calls/").status_code == 403


def test_the_admin_shows_the_log_read_only_to_the_organizations_admins(client, org, other_org, owner, teammate,
                                                                         outsider):
    mine, theirs = log(org, teammate), log(other_org, outsider, "get_run")
    client.force_login(owner)
    listed = client.get("/admin/api/mcpcall/")
    assert listed.status_code == 200
    assert f"/admin/api/mcpcall/{mine.pk}/change/" in listed.content.decode()
    assert f"/admin/api/mcpcall/{theirs.pk}/change/" not in listed.content.decode()
    assert client.get(f"/admin/api/mcpcall/{theirs.pk}/change/").status_code == 302  # not theirs: not found
    assert client.get("/admin/api/mcpcall/add/").status_code == 403
    assert client.post(f"/admin/api/mcpcall/{mine.pk}/delete/", {"post": "yes"}).status_code == 403
    client.force_login(teammate)
    assert client.get("/admin/api/mcpcall/").status_code == 403


def test_the_api_root_says_where_the_mcp_server_is(db):
    mcp = APIClient().get("/api/v1/").json()["mcp"]
    assert mcp["url"] == "http://testserver/mcp" and mcp["calls"] == "http://testserver/api/v1/mcp-calls/"


def test_secrets_and_long_texts_are_not_kept():
    kept = cleaned({"password": "hunter2", "input": {"api_key": "k", "note": "n" * 600}, "yaml": "a\x00b"})
    assert kept["password"] == "(removed)" and kept["input"]["api_key"] == "(removed)"
    assert kept["input"]["note"].endswith("… (600 characters)") and kept["yaml"] == "ab"


def test_a_token_made_with_scopes_only_reads_on_the_rest_api(owner, org):
    scoped = APIClient().post(TOKEN, {"username": "owner", "password": "pw-123456", "scopes": ["read", "run"]},
                              format="json").json()
    body = {"name": "Lead", "email": "l@example.com"}
    assert as_token(scoped["token"]).get("/api/v1/leads/").status_code == 200
    refused = as_token(scoped["token"]).post("/api/v1/leads/", body, format="json")
    assert refused.status_code == 403 and "made with MCP scopes" in refused.json()["detail"]
    assert as_token(sign_in()["token"]).post("/api/v1/leads/", body, format="json").status_code == 201
    assert as_token(scoped["token"]).delete(f"{TOKENS}{scoped['id']}/").status_code == 204  # it may end itself

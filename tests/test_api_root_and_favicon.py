"""/api/v1/ (advertised when `make run` is ready) answers with where to go next, and
/favicon.ico is not a 404 on every page."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import make_workflow

pytestmark = pytest.mark.django_db


def test_the_api_root_lists_the_docs_and_every_resource_without_a_login():
    response = APIClient().get("/api/v1/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    root = response.json()
    assert root["docs"] == "http://testserver/api/v1/docs/"
    assert root["schema"] == "http://testserver/api/v1/schema/"
    assert root["authentication"]["token"] == "http://testserver/api/v1/auth/token/"
    assert set(root["resources"]) == {"workflows", "runs", "approvals", "deals", "leads", "contacts", "tasks",
                                      "stages", "webhook_endpoints", "lifecycle_events", "event_subscriptions",
                                      "prices"}
    assert root["resources"]["workflows"] == "http://testserver/api/v1/workflows/"


def test_every_link_of_the_api_root_is_served(org, owner):
    make_workflow(org)
    client = APIClient()
    client.force_authenticate(owner)
    root = client.get("/api/v1/", HTTP_ACCEPT="application/json").json()
    links = [root["docs"], root["schema"], root["authentication"]["me"], *root["resources"].values()]
    for link in links:
        assert client.get(link).status_code == 200, link
    # The links are addresses only: the resources behind them still want a login.
    assert APIClient().get(root["resources"]["workflows"]).status_code in (401, 403)


def test_the_api_root_opens_in_a_browser_too():
    page = Client().get("/api/v1/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"/api/v1/docs/" in page.content


def test_favicon_ico_leads_to_the_icon():
    response = Client().get("/favicon.ico")
    assert response.status_code == 302
    icon = Client().get(response["Location"])
    assert icon.status_code == 200
    assert b"".join(icon.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO file


@pytest.mark.parametrize("path", ["/crm/automation/", "/admin/"])
def test_the_pages_name_their_icon(client, owner, path):
    client.force_login(owner)
    page = client.get(path).content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert Client().get("/static/favicon.svg").status_code == 200


def test_the_login_page_names_its_icon_too(client):
    assert b'rel="icon"' in client.get("/admin/login/").content

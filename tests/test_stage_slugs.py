"""Stage slugs are unique in an organization regardless of case: `won`, `Won` and `WON` cannot
coexist (a database constraint on Lower(slug)), and the API and the admin say which stage has it."""

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from crm_automation.crm.models import Stage
from tests.conftest import stage


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_database_refuses_a_slug_that_differs_only_in_case(org, other_org):
    for slug in ("Won", "WON"):
        with pytest.raises(IntegrityError), transaction.atomic():
            Stage.objects.create(organization=org, slug=slug, name="Won again")
    Stage.objects.create(organization=other_org, slug="on-hold", name="On hold")
    Stage.objects.create(organization=org, slug="On-Hold", name="On hold")  # another organization's is no matter
    assert Stage.objects.filter(slug__iexact="won", organization=org).count() == 1


def test_the_api_names_the_slug_and_the_stage_that_has_it(org, owner):
    client = api(owner)
    made = client.post("/api/v1/stages/", {"slug": "Won", "name": "Won again"}, format="json")
    assert made.status_code == 400, made.content
    assert made.json() == {"slug": ["“Won” is taken: this organization already has the stage “won”, and stage "
                                    "slugs are unique regardless of case."]}
    renamed = client.patch(f"/api/v1/stages/{stage(org, 'new').pk}/", {"slug": "WON"}, format="json")
    assert renamed.status_code == 400 and "“won”" in renamed.json()["slug"][0]
    assert stage(org, "new").slug == "new" and Stage.objects.filter(organization=org).count() == 6
    same = client.patch(f"/api/v1/stages/{stage(org, 'won').pk}/", {"slug": "won", "name": "Closed"}, format="json")
    assert same.status_code == 200  # its own slug is no clash


def test_the_admin_shows_the_error_at_the_slug(client, org, owner):
    client.force_login(owner)
    added = client.post("/admin/crm/stage/add/", {"organization": org.pk, "slug": "WON", "name": "Won!", "order": 9})
    assert added.status_code == 200 and "regardless of case" in str(added.context["adminform"].form.errors["slug"])
    lost = stage(org, "lost")
    page = client.get(f"/admin/crm/stage/{lost.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    changed = client.post(f"/admin/crm/stage/{lost.pk}/change/", {**data, "slug": "Won"})
    assert changed.status_code == 200 and "already has the stage “won”" in changed.content.decode()
    assert sorted(Stage.objects.filter(organization=org).values_list("slug", flat=True)) == sorted(
        ["new", "qualified", "proposal", "negotiation", "won", "lost"])

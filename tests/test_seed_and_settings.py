import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config import env
from crm_automation.automation.models import BulkHold, Workflow
from crm_automation.automation.runtime.tasks import drain_events
from crm_automation.crm.models import Deal, Lead, Organization, Task


def test_seed_demo_is_idempotent(db, monkeypatch, capsys):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "Demo data ready" in out
    org = Organization.objects.get(slug="demo")
    assert org.plan == "enterprise" and org.stages.count() == 6
    kickoff = Workflow.objects.get(organization=org, name="Won deal kickoff")
    assert kickoff.status == "activated" and len(kickoff.definition["actions"]) == 3
    assert set(Workflow.objects.filter(organization=org, trigger_type="lead_converted").values_list(
        "name", "status")) == {("Lead welcome email", "draft"), ("Referral thank-you", "draft")}
    assert set(Lead.objects.filter(organization=org).exclude(source="").values_list("source", flat=True)) == {
        "referral", "website", "event"}  # the "Lead source" condition has leads to tell apart
    assert Deal.objects.filter(organization=org).count() == 3
    # A trade-show import waits to be held for review by "New lead welcome" (once, not per seed).
    assert Lead.objects.filter(organization=org, company="Trade Show 2026").count() == 60
    drain_events(fan_out=False)
    (hold,) = BulkHold.objects.filter(organization=org)
    assert (hold.status, hold.count, hold.source) == ("pending", 60, "import")
    assert not Task.objects.filter(organization=org, title__startswith="Call Expo").exists()


@pytest.mark.parametrize(("helper", "raw"), [
    (lambda: env.env_bool("X_FLAG", False), "maybe"),
    (lambda: env.env_int("X_NUM", 1), "ten"),
    (lambda: env.env_int("X_NUM", 1, minimum=1), "0"),
])
def test_malformed_environment_values_fail_loudly(monkeypatch, helper, raw):
    monkeypatch.setenv("X_FLAG", raw)
    monkeypatch.setenv("X_NUM", raw)
    with pytest.raises(ImproperlyConfigured, match="X_"):
        helper()


def test_well_formed_values_are_read(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    monkeypatch.setenv("X_NUM", "7")
    monkeypatch.setenv("X_LIST", "a, b,")
    assert env.env_bool("X_FLAG", False) is True
    assert env.env_int("X_NUM", 1) == 7
    assert env.env_list("X_LIST", []) == ["a", "b"]


@pytest.mark.parametrize(("database_url", "expected"), [
    ("sqlite:////tmp/unused.sqlite3", 2),  # one writer at a time: more workers would only wait
    ("postgres://postgres@127.0.0.1:5432/unused", max(2, min(8, 2 * (os.cpu_count() or 1)))),
])
def test_workers_default_to_two_per_core_on_postgresql_and_two_on_sqlite(database_url, expected, tmp_path):
    """Q_WORKERS unset: a worker waits for PostgreSQL about half the time it drains, so two per
    core (at most 8); set, it is taken as given."""
    base = {k: v for k, v in os.environ.items() if k not in ("Q_WORKERS", "DATABASE_URL")}
    code = "from django.conf import settings; print(settings.Q_CLUSTER['workers'])"
    env = {**base, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": database_url,
           "VAR_DIR": str(tmp_path)}
    unset = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(unset.stdout) == expected, unset.stderr
    given = subprocess.run([sys.executable, "-c", code], env={**env, "Q_WORKERS": "3"}, capture_output=True,
                           text=True, check=True)
    assert int(given.stdout) == 3

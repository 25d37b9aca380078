"""On PostgreSQL a drain's looks up to its runs' creation are prepared once per connection
(bulk_insert.prepared_cursor): the organization's pick, the events' claim, the candidate
workflows, the stages, the records. PostgreSQL then parses and plans each once instead of on
every call. The runs' own statements are not. DB_PREPARED_STATEMENTS=0 (a PgBouncer in
transaction mode) sends them all unprepared; SQLite has nothing to prepare."""

import pytest
from django.db import connection

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.models import Deal
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL prepares statements")


def prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE from_sql IS FALSE")
        return [statement for (statement,) in cursor.fetchall()]


def two_changes(org, deal) -> None:
    make_workflow(org)
    for slug in ("won", "proposal"):
        deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, slug))
        drain()


def test_a_drain_s_looks_are_prepared_and_the_runs_the_same(org, deal):
    two_changes(org, deal)
    statements = prepared()
    assert any("COALESCE" in s and "automation_automationevent" in s for s in statements), statements  # the pick
    assert any(s.startswith('UPDATE "automation_automationevent" SET "claimed_until"') for s in statements)
    assert any('FROM "automation_workflow"' in s for s in statements)  # the candidate workflows
    assert any('FROM "crm_deal"' in s and "FOR NO KEY UPDATE" not in s for s in statements)  # the record
    assert not any("FOR NO KEY UPDATE" in s or "crm_emailmessage" in s for s in statements)  # the runs' own
    assert WorkflowRun.objects.get().status == "completed"
    # The second drain used what the first prepared: nothing was prepared twice.
    assert len(statements) == len(set(statements))


def test_db_prepared_statements_off_prepares_nothing(org, deal, settings):
    settings.DB_PREPARED_STATEMENTS = False
    before = prepared()  # (this connection's, earlier tests' included)
    two_changes(org, deal)
    assert prepared() == before
    assert WorkflowRun.objects.get().status == "completed"

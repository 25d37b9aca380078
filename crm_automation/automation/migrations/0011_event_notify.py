"""On PostgreSQL, every statement that writes events to the outbox notifies the channel
`crm_automation_events` when its transaction commits: a cluster's pusher listening there
(crm_automation/workers/pg_broker.py) hands its workers a drain at once, so a change needs no
nudge through the broker. A trigger, so every way of writing events notifies and none pays an
extra statement; per statement, not per row (a bulk import is one notification, and PostgreSQL
folds identical notifications of one transaction into one)."""

from django.db import migrations

from crm_automation.automation.migrations._on_postgresql import on_postgresql

CREATE = """
CREATE OR REPLACE FUNCTION crm_automation_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crm_automation_events', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS crm_automation_events_notify ON automation_automationevent;
CREATE TRIGGER crm_automation_events_notify AFTER INSERT ON automation_automationevent
    FOR EACH STATEMENT EXECUTE FUNCTION crm_automation_events_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS crm_automation_events_notify ON automation_automationevent;
DROP FUNCTION IF EXISTS crm_automation_events_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("automation", "0010_regress_replay_kind")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]

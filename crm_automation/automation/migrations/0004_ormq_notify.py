"""On PostgreSQL, a new task row of django-q2's ORM broker notifies the queue's listeners
(crm_automation/workers/pg_broker.py) when its transaction commits: a trigger, so an enqueue
costs no extra statement and every enqueue notifies, whoever makes it. The channel is
`django_q_` and the first 20 hex digits of the md5 of the queue's key (pg_broker.channel_of)."""

from django.db import migrations

from crm_automation.automation.migrations._on_postgresql import on_postgresql

CREATE = """
CREATE OR REPLACE FUNCTION django_q_ormq_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('django_q_' || left(md5(NEW.key), 20), '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS django_q_ormq_notify ON django_q_ormq;
CREATE TRIGGER django_q_ormq_notify AFTER INSERT ON django_q_ormq
    FOR EACH ROW EXECUTE FUNCTION django_q_ormq_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS django_q_ormq_notify ON django_q_ormq;
DROP FUNCTION IF EXISTS django_q_ormq_notify();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0003_decision_endpoint_filter"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]

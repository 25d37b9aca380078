"""A run of a "not while running" workflow holds its record's place itself (WorkflowRun.holds_enrollment)
instead of an Enrollment row written at dispatch and deleted at its end; Enrollment rows are left
for "once" workflows only."""

from django.db import migrations, models


def runs_take_their_places(apps, schema_editor):
    """Each "until finished" enrollment row becomes its run's flag (the run of the row's event)."""
    Enrollment = apps.get_model("automation", "Enrollment")
    WorkflowRun = apps.get_model("automation", "WorkflowRun")
    rows = Enrollment.objects.filter(until_finished=True)
    for workflow_id, event_id in rows.values_list("workflow_id", "event_id").iterator():
        WorkflowRun.objects.filter(workflow_id=workflow_id, event_id=event_id,
                                   status__in=["started", "waiting", "paused"]).update(holds_enrollment=True)
    rows.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("automation", "0001_initial"),
        ("crm", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowrun",
            name="holds_enrollment",
            field=models.BooleanField(db_default=False, default=False, editable=False),
        ),
        migrations.RunPython(runs_take_their_places, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="enrollment",
            name="until_finished",
        ),
        migrations.AddConstraint(
            model_name="workflowrun",
            constraint=models.UniqueConstraint(condition=models.Q(("holds_enrollment", True)),
                                               fields=("workflow", "trigger_entity_id"), name="uniq_run_enrollment"),
        ),
    ]

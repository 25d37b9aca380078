"""One impact preview in flight per workflow and window (issue 18, item 9).

Before the constraint: where several previews of one workflow and window are queued or running,
the newest stays and the others are marked failed (their task, if it still comes, finds them
no longer queued and does nothing)."""

from django.db import migrations, models
from django.db.models import Count, Max
from django.utils import timezone

IN_FLIGHT = ("queued", "running")


def keep_the_newest_in_flight(apps, schema_editor) -> None:
    ImpactPreview = apps.get_model("automation", "ImpactPreview")
    flying = ImpactPreview.objects.filter(status__in=IN_FLIGHT)
    doubled = (flying.order_by().values("workflow_id", "days").annotate(count=Count("pk"), newest=Max("pk"))
               .filter(count__gt=1))
    for group in doubled.iterator():
        (flying.filter(workflow_id=group["workflow_id"], days=group["days"]).exclude(pk=group["newest"])
         .update(status="failed", finished_at=timezone.now(),
                 error="Replaced by a newer request for the same window."))


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0028_workflow_name_unique"),
    ]

    operations = [
        migrations.RunPython(keep_the_newest_in_flight, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="impactpreview",
            constraint=models.UniqueConstraint(condition=models.Q(("status__in", ["queued", "running"])),
                                               fields=("workflow", "days"), name="uniq_impact_in_flight"),
        ),
    ]

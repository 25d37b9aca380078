from django.db import migrations, models

BATCH = 2000


def backfill(apps, schema_editor):
    """Emails written by a run's step before this column: their key says the run
    ("run:<id>:node:…"), so their workflows' costs count them too."""
    EmailMessage = apps.get_model("crm", "EmailMessage")
    last = 0
    while True:
        rows = list(EmailMessage.objects.filter(pk__gt=last, automation_key__startswith="run:")
                    .order_by("pk").values_list("pk", "automation_key")[:BATCH])
        if not rows:
            return
        for pk, key in rows:
            run = key.split(":")[1]
            if run.isdigit():
                EmailMessage.objects.filter(pk=pk).update(run_id=int(run))
        last = rows[-1][0]


class Migration(migrations.Migration):

    dependencies = [
        ("crm", "0011_sms_reply_seen"),
    ]

    operations = [
        migrations.AddField(
            model_name="emailmessage",
            name="run_id",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]

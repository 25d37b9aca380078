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
        found = [EmailMessage(pk=pk, run_id=int(key.split(":")[1])) for pk, key in rows
                 if key.split(":")[1].isdigit()]
        EmailMessage.objects.bulk_update(found, ["run_id"])  # one UPDATE a batch
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

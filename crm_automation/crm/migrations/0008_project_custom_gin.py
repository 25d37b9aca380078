"""Filtering projects by one of the organization's own fields uses a GIN index on PostgreSQL, as
deals', leads' and contacts' do (0003)."""

from django.db import migrations


def gin_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX IF NOT EXISTS crm_project_custom_gin ON crm_project "
                              "USING gin (custom jsonb_path_ops)")


def drop_gin_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS crm_project_custom_gin")


class Migration(migrations.Migration):

    dependencies = [
        ("crm", "0007_archived_records"),
    ]

    operations = [
        migrations.RunPython(gin_index, drop_gin_index),
    ]

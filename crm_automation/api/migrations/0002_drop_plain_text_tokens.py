"""API tokens moved from DRF's authtoken (the key stored as it is, never expiring) to
django-rest-knox (a digest, expiring). The old keys no longer authenticate; their table is
dropped so no usable-looking secret stays in the database. Clients sign in again."""

from django.db import migrations

OLD_TABLE = "authtoken_token"


def drop_old_tokens(apps, schema_editor):
    if OLD_TABLE in schema_editor.connection.introspection.table_names():
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(OLD_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("api", "0001_cache_table")]
    operations = [migrations.RunPython(drop_old_tokens, migrations.RunPython.noop)]

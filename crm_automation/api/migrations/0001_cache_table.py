"""The database cache's table (settings.CACHES without REDIS_URL): API throttles and login
lockouts count there. Made by `migrate`, so a fresh database (and every test database) has it;
made even when REDIS_URL is set today, so dropping Redis later needs no extra step."""

from django.conf import settings
from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

TABLE = "django_cache"


def _tables() -> set[str]:
    return {TABLE} | {cache["LOCATION"] for cache in settings.CACHES.values()
                      if cache["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"}


def create(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    for table in sorted(_tables()):
        command.create_table(schema_editor.connection.alias, table, dry_run=False)  # skips an existing one


def drop(apps, schema_editor):
    existing = schema_editor.connection.introspection.table_names()
    for table in sorted(_tables() & set(existing)):
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(table)}")


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []
    operations = [migrations.RunPython(create, drop, elidable=False)]

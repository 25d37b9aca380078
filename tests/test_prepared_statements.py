"""PostgreSQL plans the statements bound on the server once per connection (config/settings.py,
`_prepared_statements`): Django turns psycopg's prepared statements off unless told otherwise,
and the workers' statements were parsed and planned anew on every call."""

import json

import pytest
from django.db import connection

from crm_automation.bulk_insert import server_bound_cursor
from tests.conftest import sqlite_pass_only
from tests.test_db_pool import settings_with

SETTINGS_PREPARED = ("import json; from django.conf import settings; "
            "print(json.dumps(settings.DATABASES['default']['OPTIONS'].get('prepare_threshold', 'absent')))")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
@pytest.mark.django_db
def test_a_statement_bound_on_the_server_is_planned_once_it_has_run_a_few_times():
    statement = "SELECT %s::int + 1 AS prepared_probe"

    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                           ["%prepared_probe%"])
            return cursor.fetchone()[0]

    answers = []
    for n in range(6):
        with server_bound_cursor(connection) as cursor:
            cursor.execute(statement, [n])
            answers.append(cursor.fetchone()[0])
        if n == 3:
            assert prepared() == 0  # four times: not yet
    assert answers == [1, 2, 3, 4, 5, 6]
    assert prepared() == 1  # the fifth time on, PostgreSQL runs its stored plan


@pytest.mark.slow
@sqlite_pass_only("reads settings in subprocesses; no database is touched")
def test_the_threshold_comes_from_the_environment_and_off_turns_it_off():
    def threshold(**env: str):
        answer = settings_with(script=SETTINGS_PREPARED, **env)
        return json.loads(answer.stdout) if answer.returncode == 0 else answer.stderr

    assert threshold() == 5
    assert threshold(DB_PREPARE_THRESHOLD="0") == 0
    assert threshold(DB_PREPARE_THRESHOLD="off") is None  # PgBouncer in transaction mode before 1.21
    assert threshold(DB_POOL="0", DB_PREPARE_THRESHOLD="2") == 2
    assert "DB_PREPARE_THRESHOLD must be a whole number or off, not 'often'" in threshold(DB_PREPARE_THRESHOLD="often")
    assert "must be 0 or more" in threshold(DB_PREPARE_THRESHOLD="-1")

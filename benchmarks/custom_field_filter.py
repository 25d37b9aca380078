#!/usr/bin/env python
"""Filtering deals by an organization's own field at 1,000,000 deals on PostgreSQL: the API's
`?custom.<key>=<value>` (crm_filters.with_own_fields: `custom @> {...}`) with the GIN index the
migration makes, against the same queries with the index dropped, in the same run.

    .venv/bin/python benchmarks/custom_field_filter.py [--deals 1000000] [--runs 9]

It creates (and drops) its own database, CUSTOM_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/crm_custom_bench. One organization holds all the deals (the
worst case: the organization's own index selects nothing), each with a `tier` (one of five
choices, a fifth of the deals each), a `region` (one of a thousand, rare) and a `budget`.
Measured, as the API runs them: the first page (50, newest first) of the deals of one tier, of
one region, and the count of one region; medians of --runs, the index's size.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
URL = os.environ.get("CUSTOM_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_custom_bench")


def fresh_database() -> None:
    import psycopg

    if urlsplit(URL).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("CUSTOM_DATABASE_URL must point at 127.0.0.1")
    name = URL.rsplit("/", 1)[1]
    with psycopg.connect(URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database() -> None:
    import psycopg

    name = URL.rsplit("/", 1)[1]
    with psycopg.connect(URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    fresh_database()
    os.environ.update(DATABASE_URL=URL, DJANGO_SETTINGS_MODULE="config.settings", DB_POOL="0")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from crm_automation.api.crm_filters import own_field_filter, with_own_fields
    from crm_automation.crm.models import CustomField, Deal, Organization, Stage

    try:
        call_command("migrate", verbosity=0)
        org = Organization.objects.create(name="Big", slug="big")
        stage = Stage.objects.create(organization=org, slug="open", name="Open")
        CustomField.objects.create(organization=org, entity="deal", key="tier", label="Tier", kind="choice",
                                   choices=["Gold", "Silver", "Bronze", "Iron", "Tin"])
        CustomField.objects.create(organization=org, entity="deal", key="region", label="Region", kind="text")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO crm_deal (id, organization_id, title, amount, stage_id, probability, stage_entered_at,
                                      custom, created_at, updated_at)
                SELECT gen_random_uuid(), %s, 'Deal ' || g, g %% 50000, %s, 10, now(),
                       jsonb_build_object('tier', (ARRAY['Gold','Silver','Bronze','Iron','Tin'])[1 + g %% 5],
                                          'region', 'R' || (g %% 1000), 'budget', g %% 100000),
                       now() - g * interval '1 second', now()
                FROM generate_series(1, %s) g""", [org.pk, stage.pk, args.deals])
            cursor.execute("ANALYZE crm_deal")
            cursor.execute("SELECT pg_size_pretty(pg_relation_size('crm_deal_custom_gin')), "
                           "pg_size_pretty(pg_relation_size('crm_deal'))")
            index_size, table_size = cursor.fetchone()
        print(f"{args.deals:,} deals written in {time.perf_counter() - started:.0f} s; table {table_size}, "
              f"GIN index on custom {index_size}")

        def page(wanted: dict) -> int:
            query = with_own_fields(Deal.objects.filter(organization=org),
                                    own_field_filter(org.pk, "deal", wanted)).order_by("-created_at", "pk")
            return len(list(query.values_list("pk", flat=True)[:50]))

        def count(wanted: dict) -> int:
            wanted = own_field_filter(org.pk, "deal", wanted)
            return with_own_fields(Deal.objects.filter(organization=org), wanted).count()

        cases = [("first page of one tier (a fifth)", lambda: page({"custom.tier": "gold"})),
                 ("first page of one region (1 in 1,000)", lambda: page({"custom.region": "R7"})),
                 ("count of one region", lambda: count({"custom.region": "R7"}))]

        def measure() -> dict[str, float]:
            found = {}
            for name, run in cases:
                run()  # warm
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    run()
                    times.append((time.perf_counter() - t0) * 1000)
                found[name] = statistics.median(times)
            return found

        with_index = measure()
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX crm_deal_custom_gin")
        without = measure()
        print(f"\nmedians of {args.runs} runs, ms | with the GIN index | without it | without ÷ with")
        for name, _ in cases:
            ratio = without[name] / with_index[name]
            print(f"  {name:<40} {with_index[name]:>10.1f} {without[name]:>12.1f} {ratio:>10.1f}x")
    finally:
        connection.close()
        drop_database()


if __name__ == "__main__":
    main()

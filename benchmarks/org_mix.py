#!/usr/bin/env python
"""What one-organization-per-batch claiming costs: a drain of N changes from one organization
against the same N changes from K organizations, interleaved, in the same run.

    .venv/bin/python benchmarks/org_mix.py [--n 2000] [--orgs 200] [--rounds 3]

In process, on PostgreSQL (ORGMIX_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/crm_orgmix, dropped and recreated): every table emptied, the
organizations made with the fault harness's data (stages, an admin, deals in "proposal", the
"Won kickoff" workflow: create_task + update_field + send_email to the locmem backend), the deals
moved to won through `deal_move_to_stage` (round robin over the organizations, so consecutive
events belong to different ones), then one `drain_events(fan_out=False)` until the outbox is
empty. Prints runs/s and batches (claims) per shape, their medians over the rounds, and the
ratio mixed / single. Run it on two commits to compare claiming policies.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get("ORGMIX_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_orgmix")
os.environ.update(DATABASE_URL=DB_URL, DJANGO_SETTINGS_MODULE="config.settings", AUTOMATION_NUDGE="0",
                  EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend", LOG_LEVEL="WARNING")


def one_round(n: int, orgs: int) -> tuple[float, int]:
    """Runs/s of one drain of n changes spread over `orgs` organizations, and its batches."""
    from django.core import mail

    from benchmarks.chaos.data import add_workflow, make_org, reset_database
    from crm_automation.automation.models import WorkflowRun
    from crm_automation.automation.runtime import dispatch, tasks
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage

    reset_database()
    mail.outbox = []
    made = [make_org(f"org{i}", deals=n // orgs) for i in range(orgs)]
    for data in made:
        add_workflow(data)
    tasks.drain_events(fan_out=False)  # the set-up's own events (none trigger a run)
    deals = {data.pk: list(Deal.objects.filter(organization=data.org).order_by("title")) for data in made}
    for i in range(n // orgs):
        for data in made:
            deal_move_to_stage(deal=deals[data.pk][i], stage=data.stages["won"])
    with mock.patch.object(tasks, "claim_events", wraps=dispatch.claim_events) as claims:  # counted
        start = time.perf_counter()
        tasks.drain_events(fan_out=False, stop_at=time.monotonic() + 3600)
        seconds = time.perf_counter() - start
    runs = WorkflowRun.objects.filter(status="completed").count()
    assert runs == n, f"{runs} runs completed, {n} expected"
    return runs / seconds, claims.call_count - 1  # the last claim found nothing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--orgs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from benchmarks.chaos.run import recreate_database

    recreate_database(DB_URL)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    figures: dict[str, list[tuple[float, int]]] = {"single": [], "mixed": []}
    for r in range(args.rounds):
        for shape, orgs in (("single", 1), ("mixed", args.orgs)):
            rate, batches = one_round(args.n, orgs)
            figures[shape].append((rate, batches))
            print(f"round {r + 1} {shape:6} ({orgs:>3} orgs): {rate:6.0f} runs/s, {batches} batches", flush=True)
    single = statistics.median(rate for rate, _ in figures["single"])
    mixed = statistics.median(rate for rate, _ in figures["mixed"])
    print(f"median: single {single:.0f} runs/s, mixed {mixed:.0f} runs/s, mixed / single {mixed / single:.2f}; "
          f"batches single {figures['single'][-1][1]}, mixed {figures['mixed'][-1][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

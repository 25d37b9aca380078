"""A separate process that moves deals to "won" with `deal_move_to_stage`, as a web request or a
script would: one transaction per deal, the nudge after each commit, then exit.

    python -m benchmarks.chaos.mover --ids-file FILE [--start-at EPOCH] [--shuffle SEED]
                                     [--exit-hard] [--report FILE] [--one-transaction]

It reads DATABASE_URL, REDIS_URL, AUTOMATION_NUDGE... from its environment like any process of
the project. The deals are loaded first, then it waits until --start-at (so that several movers
race at the same instant) and moves them in file order (or shuffled with --shuffle).

--exit-hard: os._exit(0) right after the last commit, so neither the nudger thread nor the
at-exit flush gets to tell the workers (a process killed right after it saved).
--report: write {"loaded", "first_move", "last_commit", "moved"} (epoch seconds) there as JSON
before the normal exit.
--one-transaction: every move in one transaction, as a bulk action commits them (the workers
are nudged once, and the first drain claims them all together).
"""

import argparse
import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="move deals to won")
    parser.add_argument("--ids-file", type=Path, required=True)
    parser.add_argument("--start-at", type=float, default=None)
    parser.add_argument("--shuffle", type=int, default=None)
    parser.add_argument("--exit-hard", action="store_true")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--one-transaction", action="store_true")
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.db import transaction

    from crm_automation.crm.models import Deal, Stage
    from crm_automation.crm.services import deal_move_to_stage

    ids = [line.strip() for line in args.ids_file.read_text().splitlines() if line.strip()]
    deals = {str(d.pk): d for d in Deal.objects.filter(pk__in=ids).select_related("stage")}
    won = {s.organization_id: s for s in Stage.objects.filter(slug="won", organization_id__in={
        d.organization_id for d in deals.values()})}
    order = [i for i in ids if i in deals]
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(order)
    loaded = time.time()
    if args.start_at is not None:
        time.sleep(max(0.0, args.start_at - time.time()))
    first = time.time()
    with transaction.atomic() if args.one_transaction else contextlib.nullcontext():
        for deal_id in order:
            deal = deals[deal_id]
            deal_move_to_stage(deal=deal, stage=won[deal.organization_id])
    if args.exit_hard:
        os._exit(0)  # right after the commit: no nudge, no at-exit flush
    last = time.time()
    if args.report is not None:
        args.report.write_text(json.dumps({"loaded": loaded, "first_move": first, "last_commit": last,
                                           "moved": len(order)}))


if __name__ == "__main__":
    main()

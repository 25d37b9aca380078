"""A separate process that posts signed inbound webhooks to one endpoint, as a shop or a payment
provider would: each message signed the Standard Webhooks way with the endpoint's secret and
recorded by the same service as POST /api/v1/hooks/<id>/ (`inbound.webhook_receive`: signature,
plan, replay check, one event per message, the nudge after each commit), then exit.

    python -m benchmarks.chaos.webhook_sender --endpoint UUID --secret-file FILE --count N
                                              [--start-at EPOCH] [--report FILE]

The service, not the HTTP view, so the inbound throttle (a per-address budget that a real
sender meets at the web server) does not decide how many arrive: the scenario wants all of them.
--report: write {"first_post", "last_commit", "accepted"} (epoch seconds) there as JSON.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="post signed inbound webhooks")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--start-at", type=float, default=None)
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from crm_automation.webhooks import inbound, signing

    secret = args.secret_file.read_text().strip()
    if args.start_at is not None:
        time.sleep(max(0.0, args.start_at - time.time()))
    first = time.time()
    accepted = 0
    for n in range(args.count):
        body = json.dumps({"order": {"id": f"ord_{n}", "total": 10 + n}})
        headers = signing.headers([secret], message_id=f"msg_{n}", timestamp=int(time.time()), body=body)
        inbound.webhook_receive(public_id=args.endpoint, headers=headers, body=body.encode(),
                                content_type="application/json")
        accepted += 1
    last = time.time()
    if args.report is not None:
        args.report.write_text(json.dumps({"first_post": first, "last_commit": last, "accepted": accepted}))


if __name__ == "__main__":
    main()

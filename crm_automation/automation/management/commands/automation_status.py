"""What an operator asks first: is it ready, what is waiting, who is working.

    manage.py automation_status          # a readable report
    manage.py automation_status --json   # the same as JSON (readiness as /readyz, plus the rest)

Exit status 0 when ready, 1 when not (for scripts and cron checks).
"""

import json

from django.conf import settings
from django.core.management.base import BaseCommand

from crm_automation.automation.ops import health


class Command(BaseCommand):
    help = "Readiness, backlog per organization, runs waiting and due, failures in the last hour, live workers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON instead of a report.")

    def handle(self, *args, as_json: bool = False, **options) -> None:
        report = health.status()
        if as_json:
            self.stdout.write(json.dumps(report.as_data(), indent=2, ensure_ascii=False))
        else:
            self._print(report)
        if not report.ready:
            raise SystemExit(1)

    def _print(self, report: health.Status) -> None:
        out = self.stdout
        out.write(("READY" if report.ready else "NOT READY") + "\n")
        for check in report.checks:
            mark = self.style.SUCCESS("ok  ") if check.ok else self.style.ERROR("FAIL")
            out.write(f"  {mark} {check.name:<11} {check.detail} ({check.ms:.0f} ms)")
            for name in check.data.get("unapplied", []):
                out.write(f"         - {name}")
        if not report.runs:
            return  # no database, or not migrated: nothing more to read
        runs = report.runs
        out.write("\nRuns")
        out.write(f"  under way {runs['under_way']}   waiting {runs['waiting']} (wake-ups due now: "
                  f"{runs['wake_ups_due']})   paused {runs['paused']}   failed in the last hour "
                  f"{runs['failed_last_hour']}   abandoned (no live lease) {runs['abandoned']}")
        out.write("\nBacklog per organization (changes not processed yet)")
        if not report.backlog:
            out.write("  none")
        for row in report.backlog:
            out.write(f"  {row['organization']:<30} {row['events']:>8} events, "
                      f"oldest {row['oldest_event_age_seconds']:.0f} s")
        out.write(f"\nWorkers seen in the last {3 * settings.HEALTH['HEARTBEAT_SECONDS']} s")
        if not report.workers:
            out.write(self.style.WARNING("  none: is a `manage.py qcluster` running?"))
        for w in report.workers:
            out.write(f"  {w['host']} pid {w['pid']} ({w['cluster']}), up since {w['up_since']}, "
                      f"seen {w['seen_seconds_ago']:.0f} s ago")

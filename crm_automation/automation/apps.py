from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_sweep_schedule(**kwargs) -> None:
    """The sweep and the watch (breaker, alerts) run every minute on any cluster: created once,
    idempotently."""
    from django_q.models import Schedule

    from crm_automation.automation.runtime.queue import SWEEP_TASK, WATCH_TASK

    Schedule.objects.update_or_create(
        name="automation-sweep",
        defaults={"func": SWEEP_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
    Schedule.objects.update_or_create(
        name="automation-watch",
        defaults={"func": WATCH_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )


class AutomationConfig(AppConfig):
    name = "crm_automation.automation"
    label = "automation"
    verbose_name = "Automation"

    def ready(self) -> None:
        from crm_automation.automation.runtime.outbox import record_changes
        from crm_automation.crm.changes import records_changed

        # A module-level function: no weak-reference surprises, but be explicit anyway.
        records_changed.connect(record_changes, weak=False, dispatch_uid="automation-record-changes")
        from crm_automation.automation.runtime.replies import wake_on_reply
        from crm_automation.crm.sms.inbound import sms_replied

        sms_replied.connect(wake_on_reply, weak=False, dispatch_uid="automation-sms-replied")
        post_migrate.connect(ensure_sweep_schedule, sender=self, weak=False)

        from crm_automation.automation.ops.retention import ensure_prune_schedule

        post_migrate.connect(ensure_prune_schedule, sender=self, weak=False)

        from django_q.signals import post_spawn

        from crm_automation.automation.runtime.watchdog import start_watchdog

        post_spawn.connect(start_watchdog, weak=False, dispatch_uid="automation-watchdog")

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db.models.signals import post_migrate


@checks.register(checks.Tags.compatibility)
def check_webhook_settings(app_configs, **kwargs) -> list:
    """A delivery that starts just before a task's budget ends may take WEBHOOK_TIMEOUT more: the
    task must still end before django-q2's timeout kills it mid-request."""
    errors = []
    budget, timeout = settings.AUTOMATION["DRAIN_TIME_BUDGET"], settings.WEBHOOK_TIMEOUT
    if budget + timeout >= settings.Q_TIMEOUT:
        errors.append(checks.Error(
            f"AUTOMATION_DRAIN_SECONDS ({budget}) plus WEBHOOK_TIMEOUT ({timeout}) must be shorter than Q_TIMEOUT "
            f"({settings.Q_TIMEOUT}): a task must finish its last webhook request before it is killed.",
            id="webhooks.E001"))
    for host in settings.WEBHOOK_ALLOWED_HOSTS:
        if "/" in host or host.count(":") == 1:  # a scheme or a path, or a port (IPv6 has more colons)
            errors.append(checks.Error(f"WEBHOOK_ALLOWED_HOSTS entry “{host}” must be a host name or an IP address "
                                       "(no scheme, port or path).", id="webhooks.E002"))
    return errors


class WebhooksConfig(AppConfig):
    name = "crm_automation.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from crm_automation.webhooks.maintenance import ensure_prune_schedule

        post_migrate.connect(ensure_prune_schedule, sender=self, weak=False)
        from crm_automation.webhooks.subscriptions import ensure_delivery_schedule

        post_migrate.connect(ensure_delivery_schedule, sender=self, weak=False)

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Only `manage.py qcluster`: listed before django_q in INSTALLED_APPS, so its command is the
    one `manage.py` runs (automation/shutdown.py says why)."""

    name = "crm_automation.workers"
    label = "workers"
    verbose_name = "Workers"

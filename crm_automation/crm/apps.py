from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm_automation.crm"
    label = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        from crm_automation import timestamp_loader
        from crm_automation.crm import deletions

        deletions.connect()
        timestamp_loader.connect()

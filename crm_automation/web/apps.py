from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "crm_automation.web"
    label = "web"
    verbose_name = "Automation pages"

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "crm_automation.api"
    label = "api"
    verbose_name = "Integration API"

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "crm_automation.api"
    label = "api"
    verbose_name = "Integration API"

    def ready(self) -> None:
        # Receivers: lockouts are logged; a password change or a removed membership ends tokens.
        from crm_automation.api import login_guard, token_lifecycle  # noqa: F401

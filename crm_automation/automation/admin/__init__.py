from crm_automation.automation.admin import history, workflows  # noqa: F401  (registers)

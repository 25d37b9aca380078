from crm_automation.automation.admin import history, record_panels, workflows  # noqa: F401  (registers)

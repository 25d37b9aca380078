from crm_automation.automation.admin import ai_calls, bulk_holds, history, prices, record_panels, workflows  # noqa: F401,E501  (registers)

from crm_automation.automation.admin import (  # noqa: F401  (registers)
    ai_calls,
    bulk_holds,
    history,
    lifecycle_events,
    record_panels,
    workflows,
)

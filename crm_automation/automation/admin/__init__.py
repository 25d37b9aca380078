from crm_automation.automation.admin import (  # noqa: F401  (registers)
    ai_calls,
    bulk_holds,
    history,
    lifecycle_events,
    prices,
    record_panels,
    workflows,
)

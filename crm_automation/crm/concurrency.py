"""Lost-update detection shared by the services and the admin forms.

A caller says which value it saw when it started (a form's initial value); if the stored value
differs now, someone else changed it meanwhile and the write is refused for that field.
"""

from crm_automation.crm.selectors import shown


def comparable(value):
    """Browsers send line breaks as CRLF; code and imports write LF. Neither is a change."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def differs(stored, seen) -> bool:
    return comparable(stored) != comparable(seen)


def conflict_message(stored) -> str:
    return (f"Someone else changed this to {shown(stored)} since you opened this page, so your change was "
            "not saved. Save again to replace it with yours, or reload the page to keep theirs.")


def conflicts(current, expected: dict | None, changes: dict) -> dict[str, str]:
    """{field: message} for each changed field whose stored value is no longer the one seen."""
    return {name: conflict_message(getattr(current, name))
            for name, seen in (expected or {}).items()
            if name in changes and differs(getattr(current, name), seen)}

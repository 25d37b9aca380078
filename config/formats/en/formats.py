"""English formats that differ from Django's: a time is shown with its zone, in the same words
as the /crm/automation pages ("5 Dec 2026, 14:03:07 CET"), so the admin's run page and the web
run page say the same thing. The zone is the organization's (crm_automation/web/time_zone.py).
Only these names change; the rest (input formats, first day of the week) stay Django's."""

DATETIME_FORMAT = "j M Y, H:i:s T"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
DATE_FORMAT = "j M Y"
SHORT_DATE_FORMAT = "j M Y"

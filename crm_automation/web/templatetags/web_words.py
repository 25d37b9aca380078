from django import template

from crm_automation.web import words

register = template.Library()


@register.filter
def duration(ms) -> str:
    """340 ms, 1.2 s, 2 min 3 s …"""
    return words.duration(ms if isinstance(ms, int) else None)

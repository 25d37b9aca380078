from django import template

from crm_automation.crm.models import Notification

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notifications(context) -> int:
    """How many notifications the person has not read in this organization (one indexed count)."""
    request, place = context.get("request"), context.get("place")
    if request is None or place is None or not request.user.is_authenticated:
        return 0
    return Notification.objects.filter(user=request.user, organization=place.organization,
                                       read_at__isnull=True).count()

"""The probe behind pages that update by themselves (web/live.py, static/web/live.js)."""

from django.core import signing
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from crm_automation.web.live import Watch


@require_GET
def probe(request):
    """The marker of what a page watches, and whether it is all over: one query. The token is
    the credential (it never reads the session: see web/live.py)."""
    try:
        watch = Watch.read(request.GET.get("t", ""))
    except (signing.BadSignature, KeyError, ValueError, TypeError):
        return JsonResponse({"error": "This page no longer updates by itself: reload it."}, status=403)
    marker, over, runs = watch.probe()
    response = JsonResponse({"marker": marker, "over": over, "runs": {str(pk): run for pk, run in runs.items()}})
    response["Cache-Control"] = "no-store"
    return response


probe.sessionless = True  # type: ignore[attr-defined]  # (time_zone.py: no membership looked up)

"""/healthz and /readyz for load balancers and orchestrators (automation/health.py).

They are answered by `ProbeMiddleware`, first in MIDDLEWARE: before the host check (a probe
sends the host's IP address as `Host`, which is not in ALLOWED_HOSTS: Django would answer 400)
and before the HTTPS redirect (probes speak plain HTTP to the host). The URLs in config/urls.py
reach the same views when the middleware is not installed.

/healthz: the process answers (no database, no broker: a restart would not help a database
outage). /readyz: 200 when the database and broker answer, migrations are applied and the
outbox is not backed up; 503 with the failing checks otherwise. Both are JSON, never cached,
need no login and name no organization (the per-organization figures are in
`manage.py automation_status`).
"""

import os
import time

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from crm_automation.automation.ops import health

STARTED = time.monotonic()


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok", "pid": os.getpid(), "uptime_seconds": round(time.monotonic() - STARTED)})


@never_cache
@require_GET
def readyz(request):
    ok, checks = health.readiness()
    return JsonResponse(health.readiness_body(ok, checks), status=200 if ok else 503)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answers the two probe paths itself, whatever the Host header; everything else goes on."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        view = PROBES.get(request.path_info.rstrip("/"))
        return view(request) if view is not None else self.get_response(request)

"""Refuse a request whose query string or form holds a NUL character, before any view sees it.

PostgreSQL cannot store or even compare text with NUL (`\\x00`): a search for `?q=%00`, an
admin filter or an approval comment holding one ended in a DataError and a 500, on whichever
page passed it to a query. Django's form fields refuse NUL, but many pages read `request.GET`
and `request.POST` directly, so the check is made once here for every page: a 400 that says
which field held it. JSON bodies are the API parsers' concern (crm_automation.bounded_reader).
"""

from django.http import HttpRequest, HttpResponse, JsonResponse

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _field_with_nul(request: HttpRequest) -> str | None:
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return name.replace("\x00", "\\0")
    # API bodies are read by DRF's parsers (which refuse NUL); forms of the pages and the admin here.
    if request.method == "POST" and request.content_type in FORM_TYPES and not request.path.startswith("/api/"):
        for name, values in request.POST.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return name.replace("\x00", "\\0")
    return None


class RefuseNulMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        field = _field_with_nul(request)
        if field is None:
            return self.get_response(request)
        message = (f"“{field}” contains a NUL character (\\0), which no text field can hold: remove it and "
                   "send the form again.")
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message, field: [message]}, status=400)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")

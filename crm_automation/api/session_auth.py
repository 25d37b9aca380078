"""Session sign-in for the API (the pages' own calls, the browsable API), without reading the
body before the view has checked the caller's role.

DRF's SessionAuthentication checks CSRF with Django's middleware, which looks for the form's
`csrfmiddlewaretoken` in `request.POST`; on a DRF request that parses the whole body, so a
viewer's YAML or JSON document was parsed during sign-in, before any role check. A JSON or YAML
body never carries that form field (its token comes in the X-CSRFToken header), so for those the
check runs on Django's own request, whose POST is empty for such bodies and is never read.
"""

from drf_spectacular import authentication as spectacular_auth
from rest_framework import authentication
from rest_framework.request import is_form_media_type


class SessionAuthentication(authentication.SessionAuthentication):
    def enforce_csrf(self, request) -> None:
        if is_form_media_type(request.content_type):
            return super().enforce_csrf(request)
        return super().enforce_csrf(request._request)


class SessionScheme(spectacular_auth.SessionScheme):
    """The schema's `cookieAuth` for this class (drf-spectacular's matches DRF's class only)."""

    target_class = "crm_automation.api.session_auth.SessionAuthentication"  # (a path, as its base names DRF's)

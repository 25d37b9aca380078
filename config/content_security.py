"""The one exception to the Content-Security-Policy of config/settings.py.

DRF's browsable API (a person opening /api/v1/… in a browser) is laid out with style attributes
and a <style> element throughout DRF's own templates. On those pages, and only there, inline
styles are allowed; scripts stay as strict as everywhere else (DRF loads its own from /static/).
"""

from csp.constants import SELF, UNSAFE_INLINE
from rest_framework.renderers import BrowsableAPIRenderer


class BrowsableApiStyles:
    """Middleware below django-csp's: marks browsable API responses for a looser style-src."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if isinstance(getattr(response, "accepted_renderer", None), BrowsableAPIRenderer):
            # Replaced, not added to: next to a nonce a browser ignores 'unsafe-inline'.
            response._csp_replace = {"style-src": [SELF, UNSAFE_INLINE]}
        return response

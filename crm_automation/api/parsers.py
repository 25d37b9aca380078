"""Request body parsers that answer every malformed body with a 400: the project's defaults
(settings.REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])."""

from rest_framework.parsers import FormParser, MultiPartParser

from crm_automation.api.document_formats import BoundedJSONParser

# JSON at most 1 MB, and nesting deep enough to exhaust the parser is a 400, not a 500.
SafeJSONParser = BoundedJSONParser
PARSERS = [SafeJSONParser, FormParser, MultiPartParser]

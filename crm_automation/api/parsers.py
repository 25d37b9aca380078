"""Request body parsers that answer every malformed body with a 400."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, except that a body nested a few thousand levels deep (`[[[[…`) is a
    400 like any other malformed JSON, not a RecursionError and a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


PARSERS = [SafeJSONParser, FormParser, MultiPartParser]

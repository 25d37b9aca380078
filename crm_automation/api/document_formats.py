"""Bodies in and out of the endpoints: JSON and YAML, both read by the bounded reader.

Integrations post the workflow document (docs/product.md#documents) as JSON or, with
`Content-Type: application/yaml`, as the YAML text an export wrote. YAML keeps its node tree so
errors name the line. Whatever the body, it fails as a 400 that says which limit it passed
(automation/bounded_reader.py): too large, not UTF-8, nested too deeply, too many values, YAML
anchors (`&a` / `*a`, which can expand a small text into an enormous document), NUL or lone
surrogate characters.
"""

import codecs

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import BaseRenderer

from crm_automation import bounded_reader
from crm_automation.automation.definition import documents
from crm_automation.bounded_reader import DOCUMENT, PAYLOAD, Limits

MAX_BODY = PAYLOAD.max_bytes  # bytes, any endpoint; a workflow document: DOCUMENT.max_bytes


def _read(stream, limits: Limits) -> bytes:
    # One byte more than allowed tells "too large" without reading an endless body.
    body = stream.read(limits.max_bytes + 1) if stream is not None else b""
    if len(body) > limits.max_bytes:
        raise ParseError(f"{limits.what.capitalize()} is larger than {limits.max_bytes:,} bytes.")
    return body


class BoundedJSONParser(JSONParser):
    """JSON within PAYLOAD's limits (1 MB, 64 levels, 100,000 values); anything else is a 400."""

    limits = PAYLOAD

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = codecs.decode(_read(stream, self.limits), encoding)
        except (UnicodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text ({exc}).") from None
        try:
            return bounded_reader.read_json(text, self.limits)
        except bounded_reader.InputRefused as exc:
            if exc.place:  # a value that cannot be stored: named at its field, as a serializer would
                raise ParseError({exc.place: [exc.problem]}) from None
            raise ParseError(f"JSON parse error - {exc}.") from None


class DocumentJSONParser(BoundedJSONParser):
    """A workflow document as JSON: DOCUMENT's limits (200 KB, 24 levels, 20,000 values)."""

    limits = DOCUMENT


class YamlDocument(dict):
    """A parsed YAML document that remembers its node tree (for the lines of errors)."""

    tree = None


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            text = _read(stream, DOCUMENT).decode("utf-8")
        except UnicodeError:
            raise ParseError("The YAML body is not UTF-8 text.") from None
        document, tree = documents.from_yaml(text)  # DocumentError (400 with the line) if unreadable
        parsed = YamlDocument(document)
        parsed.tree = tree
        return parsed


class LegacyYAMLParser(YAMLParser):
    media_type = "application/x-yaml"


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


BODY_PARSERS = [DocumentJSONParser, YAMLParser, LegacyYAMLParser, TextYAMLParser]


class YAMLRenderer(BaseRenderer):
    """A workflow document as YAML (the text export writes, keys in the stored order)."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return documents.to_yaml(data).encode("utf-8")

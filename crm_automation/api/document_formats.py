"""Bodies in and out of the workflow endpoints: JSON and YAML documents, both bounded.

Integrations post the seed-001 document as JSON or, with `Content-Type: application/yaml`, as
the YAML text an export wrote. YAML keeps its node tree so errors name the line. Whatever the
body, it fails as a 400 that says why: too large, not UTF-8, nested without end, or YAML
anchors (`&a` / `*a`, which can expand a small text into an enormous document).
"""

import codecs

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import BaseRenderer
from rest_framework.utils import json

from crm_automation.automation import documents

MAX_BODY = 1_000_000  # bytes; a workflow of 50 nodes is a few kilobytes


def _read(stream) -> bytes:
    body = stream.read(MAX_BODY + 1) if stream is not None else b""
    if len(body) > MAX_BODY:
        raise ParseError(f"The body is larger than {MAX_BODY:,} bytes.")
    return body


class BoundedJSONParser(JSONParser):
    """JSON, at most MAX_BODY bytes; nesting deep enough to exhaust the parser is a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = codecs.decode(_read(stream), encoding)
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except (ValueError, UnicodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError("JSON parse error - the body nests too deeply.") from None


class YamlDocument(dict):
    """A parsed YAML document that remembers its node tree (for the lines of errors)."""

    tree = None


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            text = _read(stream).decode("utf-8")
        except UnicodeError:
            raise ParseError("The YAML body is not UTF-8 text.") from None
        try:
            _refuse_aliases(text)
            document, tree = documents.from_yaml(text)  # DocumentError (400 with the line) if unreadable
        except RecursionError:
            raise ParseError("The YAML body nests too deeply.") from None
        parsed = YamlDocument(document)
        parsed.tree = tree
        return parsed


class LegacyYAMLParser(YAMLParser):
    media_type = "application/x-yaml"


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


def _refuse_aliases(text: str) -> None:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise documents.DocumentError([("", "YAML anchors and aliases (&name, *name) are not accepted; "
                                                    "write the values out", event.start_mark.line + 1)])
    except yaml.YAMLError:
        return  # from_yaml says what is wrong, with the line


BODY_PARSERS = [BoundedJSONParser, YAMLParser, LegacyYAMLParser, TextYAMLParser]


class YAMLRenderer(BaseRenderer):
    """A workflow document as YAML (the text export writes, keys in the stored order)."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return documents.to_yaml(data).encode("utf-8")

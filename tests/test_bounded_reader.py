"""The one reader of YAML and JSON from people and models: its limits hold while it parses."""

import io

import pytest

from crm_automation import bounded_reader
from crm_automation.bounded_reader import DOCUMENT, PAYLOAD, InputRefused, read_int, read_json, read_upload, read_yaml

# The audit's bodies: 40 KB of brackets stalled a web worker for 31 s; nine levels of aliases
# stand for 10^9 values in 764 bytes.
DEEP_FLOW = "name: x\nnodes: " + "[" * 20000 + "]" * 20000 + "\nedges: []\n"
ALIAS_BOMB = ("l0: &l0 [x]\n" + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
              + "id: a\nname: b\nnodes: []\nedges: []\n")


def refusal(read, *args) -> InputRefused:
    with pytest.raises(InputRefused) as caught:
        read(*args)
    return caught.value


def test_it_reads_a_workflow_document_with_its_lines():
    value, tree = read_yaml("id: a\nname: b\nnodes:\n  - id: n1\n    when: 2026-01-05\nedges: []\n")
    assert value == {"id": "a", "name": "b", "nodes": [{"id": "n1", "when": "2026-01-05"}], "edges": []}
    assert tree.value[2][1].start_mark.line == 3  # the tree keeps the lines for error messages


def test_deep_flow_nesting_is_refused_at_the_limit_with_its_line():
    refused = refusal(read_yaml, DEEP_FLOW, PAYLOAD)
    assert "nests more than 64 levels deep" in refused.message and refused.line == 2
    just_over = "a: " + "[" * 25 + "]" * 25
    assert "nests more than 24 levels deep" in refusal(read_yaml, just_over).message
    assert read_yaml("a: " + "[" * 23 + "]" * 23)[0]["a"] is not None


def test_deep_block_nesting_is_refused_too():
    text = "".join("  " * i + "a:\n" for i in range(30)) + "  " * 30 + "b: 1\n"
    refused = refusal(read_yaml, text)
    assert "nests more than 24 levels deep" in refused.message and refused.line == 25


def test_anchors_and_aliases_are_refused_where_they_appear():
    refused = refusal(read_yaml, ALIAS_BOMB)
    assert "anchors and aliases" in refused.message and refused.line == 1
    assert "anchors and aliases" in refusal(read_yaml, "a: 1\nb: &x 2\n").message


def test_too_many_values_are_refused_while_parsing():
    text = "a:\n" + "".join(f"  - {i}\n" for i in range(DOCUMENT.max_nodes + 5))
    limits = bounded_reader.Limits(max_bytes=10_000_000, max_depth=24, max_nodes=DOCUMENT.max_nodes)
    refused = refusal(read_yaml, text, limits)
    assert "more than 20,000 values" in refused.message and refused.line == 19_999  # where the parse stopped


def test_size_is_refused_before_parsing():
    refused = refusal(read_yaml, "a: " + "x" * DOCUMENT.max_bytes)
    assert refused.message.startswith("The workflow is larger than 200,000 bytes")
    assert "The body is larger than 1,000,000 bytes" in refusal(read_json, b"[" + b"1," * 600_000 + b"1]").message


@pytest.mark.parametrize(("text", "words"), [
    ("a: !!binary aGVsbG8=", "the tag !!binary is not accepted"),
    ("a: !!python/object/apply:os.system [ls]", "is not accepted"),
    ("a: .inf", "numbers must be finite"),
    ("a: " + "9" * 5000, "too many digits"),
    ('a: "x\\0y"', "a: contains a NUL character"),
    ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ("a: [1, 2", "not valid YAML"),
])
def test_yaml_gives_json_types_only(text, words):
    assert words in str(refusal(read_yaml, text))


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000 + "]" * 100_000, "nests more than 64 levels deep"),
    ("[" * 65 + "]" * 65, "nests more than 64 levels deep"),
    ('{"a": [1, {"b": "x\\u0000"}]}', "a[1].b: contains a NUL character"),
    ('{"input": {"a": "\\udc00"}}', "input.a: contains an unpaired surrogate (\\udc00)"),
    ('{"a": NaN}', "NaN is not a number JSON can hold"),
    ('{"a": 1e999}', "is too large"),
    ('{"a": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"a": ', "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_json_is_refused_with_what_is_wrong(text, words):
    assert words in str(refusal(read_json, text))


def test_json_within_the_limits_is_read():
    assert read_json("[" * 64 + "]" * 64) == nested(64)  # 64 levels are allowed
    assert read_json('{"a": [1, 2.5, "é", null, true]}') == {"a": [1, 2.5, "é", None, True]}


def test_values_a_model_hands_over_are_checked_like_text():
    with pytest.raises(InputRefused, match="nests more than 64"):
        bounded_reader.check_value(nested(70))
    bounded_reader.check_value(nested(60))


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_an_upload_is_read_no_further_than_its_limit():
    huge = io.BytesIO(b"x" * 10_000_000)
    assert "larger than 200,000 bytes" in refusal(read_upload, huge).message
    assert huge.tell() == DOCUMENT.max_bytes + 1
    assert read_upload(io.BytesIO("id: é".encode())) == "id: é"
    assert "not UTF-8" in refusal(read_upload, io.BytesIO(b"\xff")).message


@pytest.mark.parametrize(("text", "number"), [
    ("3", 3), ("007", 7), ("", None), (None, None), ("abc", None), ("-1", None), ("²", None), ("9" * 5000, None),
    ("1" * 18, int("1" * 18)), ("1" * 19, None),
])
def test_numbers_from_forms_and_query_strings(text, number):
    assert read_int(text) == number

"""smtp_message.py gives the bytes and addresses Django's SMTP backend would, whatever the input:
checked against Django's own functions on generated subjects, bodies, headers and addresses
(long ones, non-ASCII ones, runs of spaces, tabs, words longer than a line)."""

from email.policy import compat32

import pytest
from django.core import mail
from django.core.mail.message import sanitize_address
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crm_automation.crm import smtp_message

pytestmark = pytest.mark.fuzz  # hundreds of generated cases (`make check` leaves them out)
# The same cases on every run (as the API fuzz): `make test` passes or fails the same way each time.
FAST = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# Header text as people write it: mostly printable ASCII, with what makes folding do something.
_WORDS = st.text(st.sampled_from("abcdefghij XYZ:<>@.,;\"'()=?_-"), max_size=120)
_ANY = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(" \t"), max_size=120)
header_text = st.one_of(_WORDS, _ANY, st.builds(lambda a, b: a + " " * 3 + b, _WORDS, _WORDS),
                        st.builds(lambda n: "x" * n, st.integers(60, 200)))


def stock_bytes(message) -> bytes:
    return message.as_bytes(linesep="\r\n")


@FAST
@given(name=st.sampled_from(["Subject", "To", "X-Workflow-Run", "Reply-To", "A" * 70]), value=header_text)
@example(name="Subject", value="Welcome Deal 12")
@example(name="Subject", value=" leading and trailing ")
@example(name="Subject", value="a" * 69)  # 9 + 69 = 78: the longest that is not folded
@example(name="Subject", value="a" * 70)
@example(name="Subject", value="tab\there")
def test_a_header_is_folded_as_the_email_package_folds_it(name, value):
    expected = compat32.clone(linesep="\r\n").fold_binary(name, value)
    assert smtp_message._POLICY.clone(linesep="\r\n").fold_binary(name, value) == expected


@FAST
@given(subject=header_text, body=st.text(max_size=3000), to=st.sampled_from(
    ["ada@example.com", "Ada Lovelace <ada@example.com>", "Zoë Ünal <zoe@bücher.example>",
     f"{'verylongmailbox' * 5}@{'subdomain' * 6}.example.com"]))
@example(subject="Welcome", body="Hi\n.\nFrom here\r\nbye", to="ada@example.com")
def test_a_message_has_the_bytes_django_would_send(subject, body, to):
    if "\n" in subject or "\r" in subject:
        subject = subject.replace("\n", " ").replace("\r", " ")  # (Django refuses them in a header)
    message = mail.EmailMessage(subject=subject, body=body, to=[to], from_email="CRM <crm@example.com>",
                                headers={"Message-ID": "<run.1@crm.example>",
                                         "Date": "Tue, 08 Dec 2026 01:00:00 -0000"})
    built = message.message()
    assert smtp_message.as_bytes(built) == stock_bytes(built)


def test_an_html_message_with_an_attachment_has_the_same_bytes():
    message = mail.EmailMultiAlternatives(subject="Report " + "x" * 90, body="plain", to=["ada@example.com"],
                                          headers={"Date": "Tue, 08 Dec 2026 01:00:00 -0000",
                                                   "Message-ID": "<a@b>"})
    message.attach_alternative("<p>html ü</p>", "text/html")
    message.attach("notes.txt", "line one\nline two", "text/plain")
    built = message.message()
    assert smtp_message.as_bytes(built) == stock_bytes(built)


@FAST
@given(address=st.one_of(
    st.emails(), st.builds(lambda n, e: f"{n} <{e}>", st.text(max_size=40), st.emails()),
    st.text(max_size=60)), encoding=st.sampled_from(["utf-8", "iso-8859-1"]))
@example(address=". <a@b.c>", encoding="utf-8")  # (the email package's parser fails on it: AttributeError)
@example(address="Zoë <zoe@bücher.example>", encoding="iso-8859-1")
def test_an_address_is_sanitized_as_django_does_and_a_bad_one_refused_every_time(address, encoding):
    try:
        expected = sanitize_address(address, encoding)
    except Exception as refused:  # noqa: BLE001 (whatever Django raises, it is raised again, every time)
        for _ in range(2):  # not remembered as a success the second time
            with pytest.raises(type(refused)) as raised:
                smtp_message.sanitized(address, encoding)
            assert str(raised.value) == str(refused)
        return
    assert smtp_message.sanitized(address, encoding) == expected
    assert smtp_message.sanitized(address, encoding) == expected
    assert smtp_message.sanitized(("Ada", "ada@example.com"), encoding) == sanitize_address(
        ("Ada", "ada@example.com"), encoding)

"""tests/roomy_stack.py: every test's body runs inside `in_roomy_stack` (tests/conftest.py)."""

import sys

import pytest

from tests.roomy_stack import SLOTS, in_roomy_stack


def test_it_returns_what_the_call_returns_and_lets_its_exception_through():
    assert in_roomy_stack(lambda: ("result", 42)) == ("result", 42)
    with pytest.raises(KeyError, match="missing"):
        in_roomy_stack(lambda: {}["missing"])


def test_its_frame_needs_more_than_64_kib_so_its_chunk_is_128_kib():
    # A frame reserves one 8-byte slot per local name: over 64 KiB, CPython sizes the new chunk
    # to the next power of two, 128 KiB, and what the call runs has the ~62 KiB left over.
    assert in_roomy_stack.__code__.co_nlocals >= SLOTS
    assert 64 * 1024 < 8 * SLOTS < 128 * 1024 - 48 * 1024


def test_this_test_runs_inside_it():
    frames, frame = [], sys._getframe()
    while frame is not None:
        frames.append(frame.f_code.co_name)
        frame = frame.f_back
    assert "in_roomy_stack" in frames

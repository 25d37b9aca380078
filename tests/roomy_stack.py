"""Run a call where CPython 3.11's frame stack has room to grow, so it does not thrash.

CPython 3.11 keeps the frames of running functions in 16 KiB chunks it maps from the kernel. When
a hot call sits just across a chunk's end, every call maps a fresh chunk and every return unmaps
it (python/cpython#142183, fixed in 3.13 and later only): the API fuzz made 850,000 mmap/munmap
pairs for 26 operations and spent a fifth of its time in the kernel.

`in_roomy_stack(call)` calls `call` from a frame that needs ~66 KiB of slots. It never fits in the
current chunk, so CPython maps a new one for it, sized up to the next power of two (128 KiB), and
everything `call` runs starts in the ~62 KiB left over: about 300 frames deep before the next
chunk's end, deeper than a test through Django, DRF and hypothesis goes. One mapping per call, not
one per inner call.
"""

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
SLOTS = 8400  # 8-byte slots: ~66 KiB, more than 64 KiB so the chunk is 128 KiB

# A function with SLOTS local variables (never assigned: a frame reserves a slot for each name).
_SOURCE = ("def in_roomy_stack(call):\n"
           "    if call is None:\n"
           f"        {' = '.join(f'_{i}' for i in range(SLOTS))} = None\n"
           "    return call()\n")
_namespace: dict = {}
exec(_SOURCE, _namespace)  # noqa: S102 (source made here, from a constant)
in_roomy_stack: Callable[[Callable[[], T]], T] = _namespace["in_roomy_stack"]

"""How `make test` hands the tests to its pytest-xdist workers: one at a time, in the order
pytest collected them, to whichever worker is free.

xdist's own `load` mode sends a worker a large share of the waiting tests at once (a quarter to
a half of its part). The suite's longest tests sit side by side near the end (pytest-django runs
the transactional ones after the others): a rolling restart takes 15-20 s, a qcluster test 5-10
s. Sent in bulk, all of them went to one worker while the other one had long finished. Each
worker here holds two tests, the one it runs and the next, so it never waits for the next one.
The order on every worker stays the collection's, which the browser tests need (they run last
in each worker: tests/browser/conftest.py)."""

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController


class OneAtATime(LoadScheduling):
    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self.maxschedchunk = 1  # the first hand-out too: two tests each

    def check_schedule(self, node: WorkerController, duration: float = 0) -> None:
        if node.shutting_down:
            return
        if not self.pending:
            node.shutdown()
            return
        self._send_tests(node, max(0, 2 - len(self.node2pending[node])))

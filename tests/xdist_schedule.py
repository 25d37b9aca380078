"""How `make test` hands the tests to its pytest-xdist workers: one at a time, in the order
pytest collected them, to whichever worker is free; the tests that mostly wait go to one worker
of their own from the start.

xdist's own `load` mode sends a worker a large share of the waiting tests at once (a quarter to
a half of its part). The suite's longest tests sit side by side near the end (pytest-django runs
the transactional ones after the others): a rolling restart takes 15-20 s, a qcluster test 5-10
s. Sent in bulk, all of them went to one worker while the other one had long finished. Each
worker here holds two tests, the one it runs and the next, so it never waits for the next one.

The tests that start worker clusters and servers (WAITING_FILES) spend most of their time
waiting for them. Handed out in order, every worker reached them at about the same time and the
machine was half idle for most of a minute. Now the first worker (the "lane") takes them from
the start while the others work through the tests that compute, then it goes on with whatever
comes after them in the collection.

The order on every worker stays the collection's (each worker only ever gets tests further down
the collection than its last one): pytest-django's groups (database tests, then transactional
ones) and the browser tests, which run last in each worker (tests/browser/conftest.py), need it."""

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController

# Their tests start qcluster processes, servers or brokers and then mostly wait for them. They
# run in the SQLite pass only (tests/conftest.py, sqlite_pass_only): on PostgreSQL, no lane.
WAITING_FILES = ("tests/test_rolling_restart.py", "tests/test_e2e_qcluster.py", "tests/test_deploy.py",
                 "tests/test_db_pool.py", "tests/test_broker_outages.py")


class OneAtATime(LoadScheduling):
    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self.maxschedchunk = 1  # the first hand-out too: two tests each
        self.lane: WorkerController | None = None
        # `make check` (-m "not e2e and …") selects none of the tests that wait, only a few quick ones
        # of their files. Given to a lane, those took it to the end of the collection, where it then
        # had nothing left to take: one worker ran 1,734 of 1,940 tests while the other waited 70 s.
        self.wants_lane = "not e2e" not in (config.getoption("markexpr") or "")
        self.last: dict[WorkerController, int] = {}  # the furthest test each worker was given

    def check_schedule(self, node: WorkerController, duration: float = 0) -> None:
        if node.shutting_down:
            return
        self._send_tests(node, max(0, 2 - len(self.node2pending[node])))
        if not self.node2pending[node]:
            node.shutdown()  # nothing left that it may run (nothing can become so later)

    def remove_node(self, node: WorkerController) -> str | None:
        crashed = super().remove_node(node)  # (a crashed worker's tests go back to the pending ones)
        self.pending.sort()
        return crashed

    def _send_tests(self, node: WorkerController, num: int) -> None:
        chosen = []
        for _ in range(num):
            index = self._next_for(node)
            if index is None:
                break
            self.pending.remove(index)
            self.last[node] = index
            chosen.append(index)
        if chosen:
            self.node2pending[node].extend(chosen)
            node.send_runtest_some(chosen)

    def _next_for(self, node: WorkerController) -> int | None:
        if self.wants_lane and self.lane is None and len(self.nodes) > 1 and _sqlite_pass():
            self.lane = node
        if node is self.lane:
            waiting = next((i for i in self.pending if self.collection[i].startswith(WAITING_FILES)), None)
            if waiting is not None:
                return waiting
        floor = self.last.get(node, -1)
        return next((i for i in self.pending if i > floor), None)


def _sqlite_pass() -> bool:
    from django.db import connection

    return connection.vendor == "sqlite"

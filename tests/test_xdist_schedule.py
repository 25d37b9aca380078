"""tests/xdist_schedule.py, the way `make test` and `make check` hand tests to their workers,
played out with two stand-in workers: each runs a test only while it holds the next one (as a
pytest-xdist worker does) or once told to shut down, one test per turn."""

from types import SimpleNamespace
from typing import cast

import pytest

from tests import xdist_schedule
from tests.xdist_schedule import OneAtATime

# A collection as pytest orders it: database tests, then those without a database, where the
# quick tests of the files that start processes sit (the rest of those files is marked e2e/slow).
COLLECTION = ([f"tests/test_api_crm.py::test_{i}" for i in range(60)]
              + ["tests/test_db_pool.py::test_quick", "tests/test_broker_outages.py::test_quick"]
              + [f"tests/test_words.py::test_{i}" for i in range(20)])


class Config:
    def __init__(self, markexpr: str) -> None:
        self.markexpr = markexpr

    def getvalue(self, name: str):
        assert name == "tx"
        return ["2*popen"]

    def getoption(self, name: str):
        return {"maxschedchunk": None, "markexpr": self.markexpr}[name]


class Worker:
    def __init__(self, name: str) -> None:
        self.name, self.shutting_down = name, False
        self.ran: list[str] = []
        self.gateway = SimpleNamespace(id=name)

    def send_runtest_some(self, indices: list[int]) -> None:
        pass

    def shutdown(self) -> None:
        self.shutting_down = True


def play(markexpr: str) -> tuple[Worker, Worker]:
    scheduler = OneAtATime(cast(pytest.Config, Config(markexpr)), log=SimpleNamespace(loadsched=lambda *args: None))
    workers = Worker("gw0"), Worker("gw1")
    for worker in workers:
        scheduler.add_node(worker)
    for worker in workers:
        scheduler.add_node_collection(worker, COLLECTION)
    scheduler.schedule()
    for _turn in range(10 * len(COLLECTION)):
        for worker in workers:
            pending = scheduler.node2pending[worker]
            if len(pending) > 1 or (pending and worker.shutting_down):
                worker.ran.append(COLLECTION[pending[0]])
                scheduler.mark_test_complete(worker, pending[0])
                scheduler.check_schedule(worker)
        if not any(scheduler.node2pending.values()):
            return workers
        if scheduler.tests_finished:  # (what pytest-xdist's session then does)
            for worker in workers:
                worker.shutdown()
    raise AssertionError("the tests were not all run")


@pytest.fixture(autouse=True)
def on_sqlite(monkeypatch):
    monkeypatch.setattr(xdist_schedule, "_sqlite_pass", lambda: True)  # (the lane is for the SQLite pass)


def test_make_check_shares_the_tests_between_its_workers():
    first, second = play("not e2e and not browser and not fuzz and not slow")
    assert sorted(first.ran + second.ran) == sorted(COLLECTION)
    assert min(len(first.ran), len(second.ran)) >= 0.4 * len(COLLECTION), (len(first.ran), len(second.ran))


def test_make_test_gives_the_tests_of_those_files_to_one_worker_from_the_start():
    first, second = play("")
    assert sorted(first.ran + second.ran) == sorted(COLLECTION)
    lane = first if first.ran[0].startswith(xdist_schedule.WAITING_FILES) else second
    assert lane.ran[:2] == ["tests/test_db_pool.py::test_quick", "tests/test_broker_outages.py::test_quick"]
    for worker in (first, second):  # each in the collection's order
        assert [COLLECTION.index(test) for test in worker.ran] == sorted(COLLECTION.index(t) for t in worker.ran)

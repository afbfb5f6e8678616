"""The supervisor of --workers N (cli/workers.py), without processes: fake workers that
die, and the clock given to it, so each restart's back-off can be followed exactly."""

from __future__ import annotations

from aurigraph_stream.cli.workers import _Supervisor
from aurigraph_stream.config import Settings


class FakeWorker:
    """Stands in for a worker process: alive until the test kills it."""

    def __init__(self) -> None:
        self.alive = True
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        return self.alive

    def die(self) -> None:
        self.alive, self.exitcode = False, 1


class Supervisor(_Supervisor):
    """Starts fake workers at the test's clock and keeps the order it started them in."""

    def __init__(self, workers: int) -> None:
        super().__init__(Settings(workers=workers, port=0, broker_url="redis://127.0.0.1:1/0"))
        self.now = 0.0
        self.started: list[int] = []
        self.fakes: dict[int, FakeWorker] = {}

    def start(self, index: int) -> None:
        fake = self.fakes[index] = FakeWorker()
        self.workers[index] = fake  # type: ignore[assignment]
        self.started_at[index] = self.now
        self.started.append(index)


def test_each_dead_worker_is_restarted_on_its_own_back_off() -> None:
    """A worker that keeps dying at start backs off longer each time (0.1 s after a long
    life, then 0.2, 0.4, ...); another worker that dies meanwhile is restarted after its
    own back-off (0.1 s, it had lived long), not after the first one's."""
    sup = Supervisor(2)
    try:
        for index in range(2):
            sup.start(index)
        sup.now = 100.0
        for _ in range(4):  # worker 0 dies, then each replacement dies at once
            sup.fakes[0].die()
            sup.check(sup.now)
            sup.now = sup.due[0]
            sup.check(sup.now)
        assert sup.started == [0, 1, 0, 0, 0, 0]
        assert round(sup.now - 100.0, 6) == 0.1 + 0.2 + 0.4 + 0.8
        sup.fakes[0].die()  # a fifth time: 1.6 s
        sup.check(sup.now)
        assert round(sup.due[0] - sup.now, 6) == 1.6
        sup.now += 0.5
        sup.fakes[1].die()
        sup.check(sup.now)
        assert round(sup.due[1] - sup.now, 6) == 0.1
        sup.now += 0.1
        sup.check(sup.now)
        assert sup.started[-1] == 1  # restarted, while worker 0 still waits
        assert list(sup.due) == [0]
        sup.now = sup.due[0]
        sup.check(sup.now)
        assert sup.started[-1] == 0
        assert sup.due == {}
    finally:
        sup.anchor.close()


def test_two_workers_dying_together_are_restarted_together() -> None:
    sup = Supervisor(3)
    try:
        for index in range(3):
            sup.start(index)
        sup.now = 60.0
        sup.fakes[0].die()
        sup.fakes[2].die()
        sup.check(sup.now)
        assert sup.due == {0: 60.1, 2: 60.1}
        sup.check(60.1)
        assert sup.started[3:] == [0, 2]
        assert sup.due == {}
    finally:
        sup.anchor.close()

"""Errors a backend raises to the learner, and the one rule every backend applies to failed actors."""
from __future__ import annotations


class ActorError(RuntimeError):
    """An actor failed (its environment raised, its process died). The message says which and why in one
    line; ``trace`` holds the actor's traceback, when it sent one."""

    def __init__(self, message: str, trace: str | None = None):
        super().__init__(message)
        self.trace = trace


def last_failure(report: str) -> str:
    """The exception that ends ``report`` (a traceback, or how an actor died), on one line: every line of its
    message, which may span several (an array's repr in an AssertionError, say), not only the last of them."""
    lines = report.rstrip().splitlines()
    if not lines:
        return "no report"
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if not frames:
        return lines[-1].strip()
    start = frames[-1] + 1
    while start < len(lines) - 1 and lines[start].startswith("    "):   # the frame's code and its ^^^ markers
        start += 1
    return " ".join(line.strip() for line in lines[start:] if line.strip())


class ActorFailures:
    """Failures of the actor slots of a backend and what follows from them.

    A failed actor (its environment raised, its process or node died) is replaced by a fresh one with
    fresh environments, up to ``max_restarts`` times in a row for one slot; a rollout delivered by the
    slot resets its count. One failure more ends the run: ``failed`` raises an :class:`ActorError`
    holding the last report. A replacement takes a new environment stream (``actor_index`` of
    ``RolloutWorker``): ``slots``, ``slots + 1``, ... in the order of the restarts, so that it plays new
    episodes instead of repeating the ones its predecessor started with.
    """

    def __init__(self, slots: int, max_restarts: int):
        self.in_a_row = [0] * slots
        self.max_restarts = max_restarts
        self.restarts = 0

    def delivered(self, slot: int) -> None:
        self.in_a_row[slot] = 0

    def failed(self, slot: int, report: str) -> int:
        """Record a failure of ``slot`` (``report``: its traceback or how it died); returns the
        environment stream of its replacement, or raises ActorError when no restart is left."""
        self.in_a_row[slot] += 1
        count = self.in_a_row[slot]
        if count > self.max_restarts:
            times = "once" if count == 1 else f"{count} times in a row"
            raise ActorError(f"actor {slot} failed {times}, more than max_actor_restarts={self.max_restarts} "
                             f"allows; its last failure: {last_failure(report)}", trace=report)
        self.restarts += 1
        return len(self.in_a_row) + self.restarts - 1

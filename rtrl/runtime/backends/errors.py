"""Errors a backend raises to the learner."""


class ActorError(RuntimeError):
    """An actor failed (its environment raised, its process died). The message says which and why in one
    line; ``trace`` holds the actor's traceback, when it sent one."""

    def __init__(self, message: str, trace: str | None = None):
        super().__init__(message)
        self.trace = trace

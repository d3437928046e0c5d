"""Errors a backend raises to the learner."""


class ActorError(RuntimeError):
    """An actor failed (its environment raised, its process died); the message holds its traceback."""

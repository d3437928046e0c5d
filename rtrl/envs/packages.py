"""Optional environment packages: an adapter that cannot import its package says how to install it."""
from __future__ import annotations

# the versions the Makefile installs (ENV_PINS); `pip install -e ".[envs]"` installs all of them unpinned
INSTALL = {"ale_py": 'pip install "ale-py==0.12.*"', "procgen": "pip install procgen2==0.10.7",
           "popgym": "pip install popgym==1.0.7", "minigrid": 'pip install "minigrid==3.2.*"',
           "mujoco": 'pip install "gymnasium[mujoco]"'}


class MissingPackage(ImportError):
    """An environment family's package is not installed (or does not import); the message holds the
    command that installs it. ``install`` overrides the pip command (DeepMind Lab is not on PyPI)."""

    def __init__(self, prefix: str, module: str, error: ImportError, install: str | None = None):
        self.prefix, self.module = prefix, module
        self.install = install or f"install it with: {INSTALL[module]}"
        super().__init__(f"{prefix}: environments need the Python package {module!r}, which cannot be imported here "
                         f"({error}); {self.install}", name=module)


class UserEnvError(ValueError):
    """A user's own environment code raised (its module at import, its constructor, its first ``reset``):
    bad input about *their* code. The message names the module or class and what it raised; ``trace`` holds
    the traceback, which the command line writes to a file the message names."""

    def __init__(self, message: str, error: BaseException):
        import traceback
        self.trace = "".join(traceback.format_exception(error))
        super().__init__(f"{message}: {type(error).__name__}: {error}")

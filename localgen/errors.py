"""Errors a user can act on. The CLI turns each into one line on stderr and an exit code.

Exit codes (documented in docs/reliability.md, "Errors and exit codes"):
  1  the work could not be done (bad file contents, a model that will not load, ...)
  2  the command line itself is wrong (click's own usage errors also use 2)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations


class LocalgenError(Exception):
    """Base class: the message tells the user what went wrong and what to do."""

    exit_code = 1


class TaskError(LocalgenError):
    """The task file is missing, unreadable or invalid."""


class DataError(LocalgenError):
    """A data file (seed data, real data) is missing, unreadable or has the wrong columns."""


class ModelError(LocalgenError):
    """A model folder is not a usable model, or the built-in model cannot be prepared."""


class EngineError(LocalgenError):
    """The generation engine is not installed or failed to start."""


class OutputError(LocalgenError):
    """The output folder cannot be used (it is a file, or holds a different run)."""


class UsageError(LocalgenError):
    """The command line asks for something contradictory (e.g. --count and --balance)."""

    exit_code = 2


class EgressBlocked(OSError):
    """Raised inside a run when code tries to connect to a non-loopback address."""

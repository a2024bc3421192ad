"""Errors a user can act on. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class HappysadError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do."""

    exit_code = 1


class UsageError(HappysadError):
    """Bad arguments (exit code 2)."""

    exit_code = 2

"""The one base class of everything the user can fix: bad models, inputs, settings or options (exit 2)."""

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input: the command line shows its message as one line and exits 2, never a traceback."""

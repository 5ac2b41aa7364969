"""User-facing errors: one line naming the problem and the fix."""


class UserError(Exception):
    """Raised for bad input; the CLI prints ``error: <message>`` and exits 2 without a traceback."""

"""The one exception type the command line turns into a one-line message and exit status."""


class WmError(Exception):
    """A problem the user can act on: printed as one line, no traceback unless --debug."""

    exit_code = 2

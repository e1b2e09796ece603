"""The one exception type the CLI turns into a single error line."""


class OscarvtError(Exception):
    """A problem the user can fix (bad input, missing file, failed VM).

    The CLI prints it as one line, without a traceback, and exits 1.
    """

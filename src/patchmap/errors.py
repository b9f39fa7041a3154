"""The one error type users see: bad input, reported in one line, exit status 2."""


class InputError(Exception):
    """Input that patchmap cannot use; the message names the file, row or column.

    The CLI prints ``error: <message>`` and exits with status 2, never a traceback.
    """

    exit_code = 2

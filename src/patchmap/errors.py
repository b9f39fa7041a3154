"""The one error type users see: bad input, reported in one line, exit status 2."""


class InputError(Exception):
    """Input that patchmap cannot use; the message names the file, row or column.

    The CLI prints ``error: <message>`` and exits with status 2, never a traceback.
    """

    exit_code = 2


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) received: unwinds like Ctrl-C so temporary files are removed.

    A ``BaseException``, so no ``except Exception`` on the way swallows it; the CLI exits
    with status 128 + the signal number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum
        self.written = False  # True: it arrived while the outputs were put in place, after


class LockError(InputError):
    """Locked units that cannot be kept as asked (``locked: ...``, in library words).

    ``units`` are the locked units concerned, so a caller that read the locks from a file
    names their lines (:func:`patchmap.pipeline.plan_units` does).
    """

    def __init__(self, message: str, units=()) -> None:
        super().__init__(message)
        self.units = [str(u) for u in units]

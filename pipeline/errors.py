"""User-facing errors, and how the command line treats every other exception.

Every error raised for a user mistake or a broken input is a `PipelineError`: its message says
what happened, what was expected and how to fix it. The CLI shows it as a clean message with exit
status 1 (`EXIT_PROBLEM`). A bad argument or option value is a `UsageError` (also a `ValueError`,
as scikit-learn and Keras raise for bad arguments), shown the same way with exit status 2
(`EXIT_USAGE`). Anything else that escapes a command is a bug in this tool: the CLI says so, how to
see the traceback (`BOTTLENECK_DEBUG=1`) and exits with `EXIT_BUG`.
"""

#: Exit status for a problem with the user's data, files or environment.
EXIT_PROBLEM = 1
#: Exit status for a bad argument or option (click's own usage errors use it too).
EXIT_USAGE = 2
#: Exit status for an unexpected exception (EX_SOFTWARE in sysexits.h).
EXIT_BUG = 70


class PipelineError(Exception):
    """An error the user can act on; the message is shown to them as is."""


class UsageError(PipelineError, ValueError):
    """A bad argument or option value: the message names it, the accepted values and the fix."""


class DatasetError(PipelineError):
    """The dataset folder, manifest or layout could not be read as asked."""


class WeightsError(PipelineError):
    """Pretrained weights could not be found, converted or verified."""


class CacheError(PipelineError):
    """A feature cache is missing, damaged, locked or does not match what was asked."""


class CacheLockedError(CacheError):
    """Another process is writing the cache."""


class HeadError(PipelineError):
    """A head could not be fitted, loaded or applied."""


def first_line(error: BaseException | str, empty: str | None = None) -> str:
    """The first line of an error's message, for quoting a failure inside a one-line message.

    Blank lines around the message are dropped. An empty message never raises: it gives `empty`
    when passed, else the exception's class name (or "no message" for an empty string).
    """
    text = str(error).strip()
    if text:
        return text.splitlines()[0].strip()
    if empty is not None:
        return empty
    return type(error).__name__ if isinstance(error, BaseException) else "no message"

"""User-facing errors.

Every error raised for a user mistake or a broken input is a `PipelineError`: its message says
what happened, what was expected and how to fix it. The CLI turns these into a clean message and
exit status 1, never a traceback. Programming errors stay ordinary exceptions.
"""


class PipelineError(Exception):
    """An error the user can act on; the message is shown to them as is."""


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

"""The project's exception family. Messages say what went wrong and what to do about it."""
from transforms.masking import mask_secrets


class CapiSyncError(Exception):
    """Base class for every error this project raises on purpose.

    Its message is masked when the error is made (transforms/masking.py): an error that quotes
    an option, a URL or an API answer never carries a key-like string.
    """

    def __init__(self, *args: object):
        super().__init__(*(mask_secrets(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(CapiSyncError):
    """Bad options or environment, detected before any data is read."""


class MappingFileError(ConfigError):
    """A mapping file that cannot be used; the message names the file, the key path and the fix."""


class InvalidValueError(ValueError):
    """A row value that cannot become part of an event (an amount, currency, timestamp, ...).

    Carries the dead-letter reason code (transforms.reasons) and a detail that names the field
    and the rule but never the value itself (it may be personal data).
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self):
        return (InvalidValueError, (self.reason, self.detail))

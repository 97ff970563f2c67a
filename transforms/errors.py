"""The project's exception family. Messages say what went wrong and what to do about it."""


class CapiSyncError(Exception):
    """Base class for every error this project raises on purpose."""


class ConfigError(CapiSyncError):
    """Bad options or environment, detected before any data is read."""


class MappingFileError(ConfigError):
    """A mapping file that cannot be used; the message names the file, the key path and the fix."""

"""Where a run writes its results (--report, --state-file, --dead-letter): checked before any data
is read, and written so that no reader ever sees half a file.

- `check_writable` runs with the other option checks: a location that cannot be written is a
  configuration error (exit 2), found before anything is read or sent, not after delivery.
- `write_file` replaces a local regular file atomically (a temporary file in the same folder,
  fsync, rename): a full disk, a crash or Ctrl-C leaves the old file or the new one, never a
  truncated one. A device or pipe (/dev/stdout) is written in place. Remote paths (gs://) go
  through Beam's FileSystems: an object store publishes an object only once its upload is
  complete, so readers see the old object or the new one there too.
"""
from __future__ import annotations

import os
import stat
import tempfile

from apache_beam.io.filesystems import FileSystems

from transforms.errors import ConfigError


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def check_writable(location: str, what: str, *, is_prefix: bool = False) -> None:
    """Raises ConfigError when `location` (a file, or a prefix of files) cannot be written.

    Local paths are probed for real: a temporary file is created (and removed) in the folder
    the output goes to, or in its nearest existing parent when the folders are still to be
    created. Remote paths are checked when written (their permissions live with the service).
    """
    if not is_local(location):
        return
    path = os.path.abspath(location)
    if not is_prefix and os.path.isdir(path):
        raise ConfigError(f"{what} {location} is a directory; give a file path "
                          f"(e.g. {os.path.join(location, 'out.json')}).")
    if not is_prefix and os.path.exists(path) and not _is_regular(path):
        _probe_open(path, what, location)        # /dev/stdout, a pipe: written in place
        return
    folder = os.path.dirname(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"{what} {location}: {folder} is a file, not a folder; choose another "
                          f"location.")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".capi-sync-write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"{what} {location} cannot be written: no file can be created in "
                          f"{folder} ({error.strerror}). Choose a writable location, or fix the "
                          f"folder's permissions, before anything is read or sent.") from None
    if os.path.exists(path):
        _probe_open(path, what, location)


def check_no_earlier_dead_letters(prefix: str) -> None:
    """Raises ConfigError when dead-letter files of an earlier run are at `prefix`: Beam's text
    sink would replace them with this run's (`<prefix>-<step>-NNNNN.jsonl`), silently, once
    this run finished. A remote prefix that cannot be listed here is checked by nobody (the
    workers would write over it), so the failure to list it is not an error."""
    try:
        found = [metadata.path for result in FileSystems.match([f"{prefix}-*.jsonl"])
                 for metadata in result.metadata_list]
    except Exception:   # noqa: BLE001 - gs:// without credentials on the launcher
        if is_local(prefix):
            raise
        return
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise ConfigError(
            f"--dead-letter {prefix} already holds dead letters of an earlier run "
            f"({sorted(found)[0]}{more}): this run's would replace them. Give each run its own "
            f"prefix (a dated one such as dead/2026-12-01/dead, or leave --dead-letter out for "
            f"dead_letters/<run id>/dead), or move those files first (replay them with "
            f"--input-format dead-letter).")


def _probe_open(path: str, what: str, location: str) -> None:
    try:
        with open(path, "ab"):
            pass
    except OSError as error:
        raise ConfigError(f"{what} {location} cannot be written ({error.strerror}). Choose a "
                          f"writable location before anything is read or sent.") from None


def _is_regular(path: str) -> bool:
    return stat.S_ISREG(os.stat(path).st_mode)


def _mode_for(path: str) -> int:
    """The existing file's permissions, else what open() would give (mkstemp makes 0600)."""
    if os.path.exists(path):
        return stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_file(path: str, data: bytes, mime_type: str = "application/json") -> None:
    """Writes `data` to `path` whole or not at all (see the module docstring); raises OSError."""
    if not is_local(path):
        with FileSystems.create(path, mime_type=mime_type) as handle:
            handle.write(data)
        return
    if os.path.exists(path) and not _is_regular(path):
        with open(path, "wb") as handle:        # never rename over a device such as /dev/full
            handle.write(data)
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp")
    try:
        os.chmod(temporary, _mode_for(path))
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise

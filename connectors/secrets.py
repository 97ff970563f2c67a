"""Where the API key comes from: an environment variable, or GCP Secret Manager.

The key is never a pipeline option value (options are visible in the Dataflow UI and in job
templates); options carry only the *name* of the variable or the secret resource, and workers
read the key in `DoFn.setup()`. Nothing here logs or echoes the key.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Mapping

from transforms.errors import ConfigError

_LOG = logging.getLogger(__name__)

DEFAULT_API_KEY_ENV = "OPENAI_CAPI_API_KEY"
_SECRET_RESOURCE = re.compile(r"projects/[^/\s]+/secrets/[^/\s]+(/versions/[^/\s]+)?")


def read_api_key(api_key_env: str | None = DEFAULT_API_KEY_ENV, api_key_secret: str | None = None,
                 *, environ: Mapping[str, str] | None = None) -> str:
    """The key from Secret Manager when `api_key_secret` is given, else from `api_key_env`.

    >>> read_api_key("OPENAI_CAPI_API_KEY")             # the variable's value, stripped
    >>> read_api_key(None, "projects/p/secrets/capi")   # latest version of that secret
    """
    if api_key_secret:
        return read_secret_manager(api_key_secret)
    if not api_key_env:
        raise ConfigError("No API key source: pass --api-key-env NAME or --api-key-secret "
                          "projects/…/secrets/…/versions/…")
    value = (os.environ if environ is None else environ).get(api_key_env, "").strip()
    if not value:
        raise ConfigError(
            f"No API key: environment variable {api_key_env} is not set or empty. Put the "
            f"Conversions API key (sk-svcacct-…) in {api_key_env} on every worker, or use "
            "--api-key-secret with a GCP Secret Manager resource.")
    return value


def secret_version_name(resource: str) -> str:
    """A full secret version name; a resource without /versions/… means the latest version."""
    resource = resource.strip()
    if _SECRET_RESOURCE.fullmatch(resource) is None:
        raise ConfigError(
            f"--api-key-secret {resource!r} is not a Secret Manager resource; expected "
            "projects/PROJECT/secrets/NAME[/versions/VERSION]")
    return resource if "/versions/" in resource else resource + "/versions/latest"


def read_secret_manager(resource: str) -> str:
    """Reads a secret version's payload (UTF-8, stripped) with google-cloud-secret-manager."""
    name = secret_version_name(resource)
    try:
        secretmanager = importlib.import_module("google.cloud.secretmanager")
    except ImportError:
        raise ConfigError(
            "--api-key-secret needs the google-cloud-secret-manager package on the workers: "
            "pip install 'capi-sync[gcp-secrets]' (or google-cloud-secret-manager).") from None
    try:
        client = secretmanager.SecretManagerServiceClient()
        response = client.access_secret_version(request={"name": name})
        value = response.payload.data.decode("utf-8").strip()
    except Exception as exc:  # google.api_core errors, auth errors, bad UTF-8 ...
        # The error type and resource are enough to act on; payload text never goes in here.
        raise ConfigError(
            f"Cannot read API key from Secret Manager {name}: {type(exc).__name__}: "
            f"{_first_line(exc)}. Check the resource name and that the worker service account "
            "has roles/secretmanager.secretAccessor.") from None
    if not value:
        raise ConfigError(f"Secret Manager {name} holds an empty API key")
    _LOG.info("Read the API key from Secret Manager %s", name)
    return value


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no message"

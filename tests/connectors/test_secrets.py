"""API key lookup: environment variable or GCP Secret Manager (a stand-in module, no network)."""
from __future__ import annotations

import sys
import types

import pytest

from connectors.secrets import read_api_key, secret_version_name
from transforms.errors import ConfigError

RESOURCE = "projects/acme/secrets/capi-key/versions/3"


def fake_secretmanager(payload: bytes | None = None, error: Exception | None = None):
    """A module shaped like google.cloud.secretmanager that records the names it was asked for."""
    requested = []

    class SecretManagerServiceClient:
        def access_secret_version(self, request):
            requested.append(request["name"])
            if error is not None:
                raise error
            return types.SimpleNamespace(payload=types.SimpleNamespace(data=payload))

    module = types.ModuleType("google.cloud.secretmanager")
    module.SecretManagerServiceClient = SecretManagerServiceClient
    return module, requested


@pytest.mark.parametrize(("value", "expected"), [
    ("sk-svcacct-abc", "sk-svcacct-abc"), ("  sk-svcacct-abc\n", "sk-svcacct-abc")])
def test_key_from_the_named_environment_variable(value, expected):
    assert read_api_key("MY_KEY", environ={"MY_KEY": value}) == expected


@pytest.mark.parametrize("environ", [{}, {"MY_KEY": ""}, {"MY_KEY": "  \n"}])
def test_missing_key_names_the_variable(environ):
    with pytest.raises(ConfigError, match="environment variable MY_KEY is not set or empty"):
        read_api_key("MY_KEY", environ=environ)


def test_no_source_at_all_is_a_config_error():
    with pytest.raises(ConfigError, match="--api-key-env NAME or --api-key-secret"):
        read_api_key(None, None, environ={})


@pytest.mark.parametrize(("resource", "expected"), [
    (RESOURCE, RESOURCE),
    ("projects/acme/secrets/capi-key", "projects/acme/secrets/capi-key/versions/latest"),
])
def test_secret_version_name(resource, expected):
    assert secret_version_name(resource) == expected


@pytest.mark.parametrize("resource", ["capi-key", "projects/acme/capi-key",
                                      "projects/acme/secrets/a/versions/1/extra"])
def test_bad_secret_resource_is_refused(resource):
    with pytest.raises(ConfigError, match="is not a Secret Manager resource"):
        secret_version_name(resource)


def test_key_from_secret_manager_wins_over_the_environment(monkeypatch):
    module, requested = fake_secretmanager(payload=b"sk-svcacct-from-secret\n")
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", module)

    key = read_api_key("MY_KEY", "projects/acme/secrets/capi-key",
                       environ={"MY_KEY": "sk-svcacct-from-env"})

    assert key == "sk-svcacct-from-secret"
    assert requested == ["projects/acme/secrets/capi-key/versions/latest"]


def test_secret_manager_not_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)

    with pytest.raises(ConfigError, match="pip install 'capi-sync\\[gcp-secrets\\]'"):
        read_api_key(None, RESOURCE)


def test_secret_manager_failure_names_the_resource(monkeypatch):
    module, _ = fake_secretmanager(error=PermissionError("403 Permission denied on secret"))
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", module)

    with pytest.raises(ConfigError) as raised:
        read_api_key(None, RESOURCE)

    assert str(raised.value) == (
        f"Cannot read API key from Secret Manager {RESOURCE}: PermissionError: 403 Permission "
        "denied on secret. Check the resource name and that the worker service account has "
        "roles/secretmanager.secretAccessor.")


def test_empty_secret_is_refused(monkeypatch):
    module, _ = fake_secretmanager(payload=b"\n")
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", module)

    with pytest.raises(ConfigError, match="holds an empty API key"):
        read_api_key(None, RESOURCE)

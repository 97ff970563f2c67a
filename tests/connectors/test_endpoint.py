"""The endpoint rule (connectors/endpoint.py): parsed once, as requests/urllib3 parse it."""
from __future__ import annotations

import pytest

from connectors.capi_client import CapiClient
from connectors.endpoint import (
    Endpoint,
    InsecureEndpointError,
    parse_endpoint,
    resolves_to_loopback,
)
from transforms.errors import ConfigError

SECRET = "sk-svcacct-PASTED-into-the-url-0123456789"


@pytest.mark.parametrize("text, expected", [
    ("https://bzr.openai.com/v1/events",
     Endpoint("https://bzr.openai.com/v1/events", "https", "bzr.openai.com", None, "/v1/events")),
    ("HTTPS://BZR.openai.com:8443/v1/events",
     Endpoint("https://bzr.openai.com:8443/v1/events", "https", "bzr.openai.com", 8443,
              "/v1/events")),
    ("http://127.0.0.1:8080/v1/events",
     Endpoint("http://127.0.0.1:8080/v1/events", "http", "127.0.0.1", 8080, "/v1/events")),
    ("http://127.9.9.9/v1/events",
     Endpoint("http://127.9.9.9/v1/events", "http", "127.9.9.9", None, "/v1/events")),
    ("http://localhost:8080/v1/events",
     Endpoint("http://localhost:8080/v1/events", "http", "localhost", 8080, "/v1/events")),
    ("http://[::1]:9/v1/events", Endpoint("http://[::1]:9/v1/events", "http", "[::1]", 9,
                                          "/v1/events")),
])
def test_accepted_endpoints(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text, error, says", [
    # urllib.parse reads the host after "\@" (127.0.0.1, loopback), requests connects to the
    # host before it (127.0.0.2 here, any host in the attack): refused before either matters.
    ("http://127.0.0.2:18205\\@127.0.0.1:18080/v1/events", ConfigError, "backslash"),
    ("http://evil.example\\@127.0.0.1/v1/events", ConfigError, "backslash"),
    (f"http://capi:{SECRET}@127.0.0.1:8080/v1/events", ConfigError, "user-info"),
    (f"https://{SECRET}@bzr.openai.com/v1/events", ConfigError, "user-info"),
    (f"https://bzr.openai.com/v1/events?k={SECRET}", ConfigError, "query string"),
    ("https://bzr.openai.com/v1/events?", ConfigError, "query string"),
    ("https://bzr.openai.com/v1/events#top", ConfigError, "fragment"),
    ("https://bzr.openai.com/v1/ events", ConfigError, "white space"),
    ("https://bzr.openai.com/v1/events\n", ConfigError, "white space"),
    ("https://bzr.оpenai.com/v1/events", ConfigError, "non-ASCII"),        # Cyrillic о
    ("http://%31%32%37.0.0.1/v1/events", ConfigError, "percent-encoded host"),
    ("ftp://bzr.openai.com/v1/events", ConfigError, "is not an http"),
    ("bzr.openai.com/v1", ConfigError, "is not an http"),
    ("https:///v1/events", ConfigError, "is not an http"),
    ("http://127.0.0.1:99999/v1/events", ConfigError, "is not an http"),
    ("", ConfigError, "empty"),
    ("http://bzr.openai.com/v1/events", InsecureEndpointError, "Refusing plain http://"),
    ("http://10.0.0.5/v1/events", InsecureEndpointError, "Refusing plain http://"),
    ("http://[2001:db8::1]/v1", InsecureEndpointError, "Refusing plain http://"),
    ("http://localhost.example.com/v1/events", InsecureEndpointError, "Refusing plain http://"),
    ("http://127.1/v1/events", InsecureEndpointError, "Refusing plain http://"),    # not a literal
    ("http://0x7f.0.0.1/v1/events", InsecureEndpointError, "Refusing plain http://"),
    ("http://localhost./v1/events", InsecureEndpointError, "Refusing plain http://"),
])
def test_refused_endpoints(text, error, says):
    with pytest.raises(error, match=says) as raised:
        parse_endpoint(text)
    assert SECRET not in str(raised.value)       # never echoed, masked or not
    assert "PASTED" not in str(raised.value)


def test_the_client_refuses_what_the_rule_refuses_without_echoing_the_key():
    with pytest.raises(ConfigError) as raised:
        CapiClient(f"http://u:{SECRET}@127.0.0.1:1/v1/events", "px", "sk-svcacct-k")
    assert "PASTED" not in str(raised.value)


def test_the_client_sends_to_the_url_the_rule_checked():
    client = CapiClient("HTTP://LOCALHOST:1/v1/events", "px", "sk-svcacct-k")
    assert client.endpoint == "http://localhost:1/v1/events"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.255.0.9", True), ("[::1]", True), ("::1", True),
    ("localhost", True), ("LOCALHOST", True), ("10.1.2.3", False), ("[::ffff:10.0.0.1]", False),
    ("example.com", False), ("localtest.me", False),    # a name that resolves to 127.0.0.1
])
def test_loopback_is_decided_on_the_resolved_address(host, loopback):
    assert resolves_to_loopback(host) is loopback

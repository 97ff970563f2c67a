"""The CAPI endpoint, parsed once by the parser the HTTP library itself uses.

`parse_endpoint` is the one rule: the options check it before any data is read, and the client
sends to the URL it returns, so the host that was checked is the host that is connected to.
urllib.parse and urllib3 disagree on some URLs (`http://127.0.0.2:1\\@127.0.0.1:2/` is host
127.0.0.1 for the first, 127.0.0.2 for the second): the text is parsed with requests'
`PreparedRequest.prepare_url` (urllib3's `parse_url`), and anything such parsers read differently
— a backslash, user-info, a query or fragment, white space, non-ASCII, a percent sign before the
path — is refused. Plain http:// is allowed only to loopback, checked on the resolved address:
an IP literal in 127.0.0.0/8 or ::1, or `localhost` when every address it resolves to is
loopback. Refusals never echo user-info or a query (where a key might have been pasted).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from transforms.errors import ConfigError

EXAMPLE = "https://bzr.openai.com/v1/events"


class InsecureEndpointError(ConfigError):
    """A plain http:// endpoint that is not on this machine: the key would travel in clear text."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A checked endpoint: `url` is what requests will send to (`https://host[:port]/path`)."""

    url: str
    scheme: str
    host: str
    port: int | None
    path: str

    @property
    def plain_http(self) -> bool:
        return self.scheme == "http"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str) -> Endpoint:
    """The endpoint of `text`, or ConfigError naming what is wrong and the fix.

    >>> parse_endpoint("https://bzr.openai.com/v1/events").host
    'bzr.openai.com'
    """
    if not isinstance(text, str) or not text:
        raise ConfigError(f"--endpoint is empty; expected a URL such as {EXAMPLE}")
    _refuse_ambiguous_text(text)
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(text, None)
        parsed = parse_url(prepared.url)
    except (requests.RequestException, LocationParseError, ValueError):
        raise ConfigError(f"--endpoint {_shown(text)} is not an http(s) URL; expected e.g. "
                          f"{EXAMPLE}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"--endpoint {_shown(text)} is not an http(s) URL; expected e.g. "
                          f"{EXAMPLE}")
    if parsed.auth is not None:
        raise ConfigError("--endpoint must not carry user-info (user:password@): the key is "
                          "sent in the Authorization header, never in the URL. Remove it (and "
                          "rotate the credential if it was a key).")
    if parsed.query is not None or parsed.fragment is not None or "?" in text or "#" in text:
        raise ConfigError("--endpoint must not carry a query string or fragment (?…, #…): the "
                          "pixel is --pixel-id and the key is read from the environment. Remove "
                          "it (and rotate the credential if it was a key).")
    reference = urlsplit(text)
    if (reference.hostname or "") != parsed.host.strip("[]").lower() or \
            reference.port != parsed.port:
        raise ConfigError(f"--endpoint {_shown(text)} is ambiguous (URL parsers disagree on its "
                          f"host); write it plainly, e.g. {EXAMPLE}")
    endpoint = Endpoint(url=parsed.url, scheme=parsed.scheme, host=parsed.host,
                        port=parsed.port, path=parsed.path or "/")
    if endpoint.plain_http and not resolves_to_loopback(endpoint.host):
        raise InsecureEndpointError(
            f"Refusing plain http:// endpoint {endpoint.url!r}: the API key would travel "
            "unencrypted. Use https://, or http:// only to a loopback address (127.0.0.1, "
            "::1, localhost) such as the local emulator.")
    return endpoint


def resolves_to_loopback(host: str) -> bool:
    """True for a loopback IP literal, or `localhost` when all its addresses are loopback.

    Other names are refused even if they resolve to loopback today: resolution may differ at
    connection time (DNS rebinding), and only the emulator needs plain HTTP.
    """
    literal = host.strip("[]")
    try:
        return ipaddress.ip_address(literal).is_loopback
    except ValueError:
        pass
    if host.lower() != "localhost":
        return False
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(address.split("%", 1)[0]).is_loopback for address in addresses)


def _refuse_ambiguous_text(text: str) -> None:
    if "\\" in text:
        raise ConfigError("--endpoint contains a backslash, which URL parsers read differently "
                          f"(one connects to another host than the other checks); write it "
                          f"plainly, e.g. {EXAMPLE}")
    if not text.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ConfigError("--endpoint contains white space, control or non-ASCII characters; "
                          f"write it plainly (punycode for a non-ASCII host), e.g. {EXAMPLE}")
    authority = text.split("://", 1)[-1].split("/", 1)[0]
    if "%" in authority:
        raise ConfigError("--endpoint has a percent-encoded host; write the host plainly, e.g. "
                          f"{EXAMPLE}")


def _shown(text: str) -> str:
    """The endpoint as it may be echoed: not at all when it might hold a credential."""
    if any(ch in text for ch in "@?#\\"):
        return "(not shown: it has user-info, a query or a fragment)"
    return repr(text)

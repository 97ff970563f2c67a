"""source_url (contract section 3): an absolute URL with a scheme and a host, origin and path only.

    normalize_source_url("https://shop.example.com/thanks?email=jo%40x.com#top")
        -> "https://shop.example.com/thanks"          (query and fragment removed)
    normalize_source_url("https://shop.example.com/p?utm_source=ads", keep_query=True)
        -> "https://shop.example.com/p?utm_source=ads"
    is_absolute_url("/checkout/thanks") -> False      (relative path: invalid_source_url)
    is_absolute_url("shop.example.com/p/9") -> False  (bare host: invalid_source_url)

OpenAI's setup guidance is to send origin and path only: query strings carry emails, tokens and
tracking noise. The fragment never reaches a web server and is always removed; user info in the
authority (`https://user:secret@host/`) is a credential and is always removed. Regular
expressions rather than urllib.parse: this runs on every event (twice: mapper and validator),
and urlsplit builds a result object and raises on some malformed hosts.
"""
from __future__ import annotations

import re
from typing import Any

# RFC 3986: scheme "://" authority path. The authority is optional user info ("user@"), then a
# host that is not empty (a name, or an IPv6 address in brackets), then an optional ":port".
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
_WITH_HOST = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://(?:[^/?#]*@)?(?:\[[^\]/?#]+\]|[^/?#@:\[\]]+)(?::[^/?#]*)?"
    r"(?:[/?#].*)?", re.DOTALL)


def is_absolute_url(value: Any) -> bool:
    """A text with a scheme and a non-empty host ('https://shop.example.com/checkout')."""
    return isinstance(value, str) and _WITH_HOST.fullmatch(value) is not None


def normalize_source_url(text: str, keep_query: bool = False) -> str:
    """`text` without its fragment, its user info and (unless keep_query) its query.

    A text that is not an absolute URL loses its query and fragment too (it is dead-lettered as
    invalid_source_url, and a dead letter must not carry what a query may hold).
    """
    head = text.partition("#")[0]
    if not keep_query:
        head = head.partition("?")[0]
    elif head.endswith("?"):
        head = head[:-1]
    if "@" in head:
        match = _ABSOLUTE.fullmatch(head)
        if match is not None and "@" in match[2]:
            head = f"{match[1]}://{match[2].rpartition('@')[2]}{match[3]}"
    return head

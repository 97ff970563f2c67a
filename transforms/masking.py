"""Masking of API keys in text the program writes: the one rule, applied wherever text leaves.

Anything that looks like an OpenAI key — `sk-` followed by key characters (letters, digits, `-`,
`_`) — is masked, whatever its source: the key itself, a key pasted into an option, an API
error body that quotes the Authorization header. The key's kind stays readable, so a message
can still say which kind of key was used:

>>> mask_secrets("Bearer sk-svcacct-Ab12_xyz was refused")
'Bearer sk-svcacct-[masked] was refused'

The bare kind names our own hints use ("create a key sk-svcacct-…") are not keys and stay.
Applied by: the exception family (transforms/errors.py), dead-letter records
(transforms/deadletter.py), the console log formatter and stderr (pipeline/logs.py), the command
line's output (pipeline/cli.py), the report (pipeline/report.py) and the CAPI client's messages.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[masked]"
# Kinds of key OpenAI issues (sk-svcacct-… Conversions, sk-proj-… project, sk-admin-…).
_KINDS = ("svcacct", "proj", "admin")
# Not preceded by a letter or digit: "task-runner-1" holds "sk-runner-1" but is not a key.
_KEY_LIKE = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]+")
_KIND = re.compile(rf"(?:{'|'.join(_KINDS)})(?:-|$)")


def _mask_one(match: re.Match[str]) -> str:
    rest = match.group(0)[3:]
    kind = _KIND.match(rest)
    prefix = kind.group(0) if kind else ""
    if not rest[len(prefix):]:
        return match.group(0)          # "sk-svcacct-" alone: a kind named in a hint
    return f"sk-{prefix}{MASK}"


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with key-like strings, and each of `secrets` (exact values), masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    if "sk-" not in text:
        return text                    # the common case, without a regex pass
    return _KEY_LIKE.sub(_mask_one, text)

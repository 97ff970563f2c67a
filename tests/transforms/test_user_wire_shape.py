"""Property test: whatever the rows hold, UserBuilder writes every user key in its wire shape.

The mapper relies on it: it validates its events with `validate_event(..., user_built=True)`,
which does not run `check_user` again on the builder's output (the check cost a tenth of the
mapping time). Events from anywhere else (replayed dead letters) are still checked.

The oracles are the emulator's own encoding of the published wire shapes (profile openai,
connectors/emulator/rules.py, which imports nothing from transforms) and the validator's
`check_user` (both profiles); both `build` and the columnar `build_columns` are checked.
"""
from __future__ import annotations

import collections
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.emulator import rules
from transforms.paths import Path, ValueSource, present_column
from transforms.user_fields import LOGICAL_FIELDS, NOT_BUILT, UserBuilder
from transforms.validate import check_user, validate_event

HEX = "0123456789abcdefABCDEF"
texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["jo@example.com", " Jo.Doe+x@Example.COM ", "+33 6 12 34 56 78",
                     "0044 20 7946 0958", "(555) 010-9999", "10.0.0.1", "2001:DB8::1",
                     "::ffff:10.0.0.1", "38400000-8CF0-11BD-B23E-10B96E4EF00D",
                     "00000000-0000-0000-0000-000000000000", "FR", "fra", "France", "us",
                     "Zoë", "O'Brien-Smith", "75001", "SW1A 1AA", "(not set)", " ", ""]),
    st.text(alphabet=HEX, min_size=64, max_size=64),
    st.text(alphabet=HEX, min_size=64, max_size=64).map(lambda h: f"  {h} "),
)
values = st.one_of(st.none(), texts, st.integers(-10**12, 10**12),
                   st.lists(st.one_of(st.none(), texts), max_size=5))
rows = st.fixed_dictionaries({field: values for field in LOGICAL_FIELDS})
regions = st.sampled_from([None, "US", "FR", "JP"])


def builder(profile: str, region: str | None) -> UserBuilder:
    return UserBuilder(profile, tuple((field, ValueSource(f"user.fields.{field}", (Path(field),)))
                                      for field in LOGICAL_FIELDS), region)


def event_with(user: dict, now_ms: int) -> dict:
    return {"id": "e1", "type": "page_viewed", "timestamp_ms": now_ms, "action_source": "web",
            "source_url": "https://shop.example/p", "data": {"type": "contents"}, "user": user}


def assert_hashes_are_lower_hex(user: dict) -> None:
    """Stricter than the wire rule for lists (the API skips a bad element): none is sent."""
    for key, value in user.items():
        if key.endswith("_sha256"):
            for text in value if isinstance(value, list) else [value]:
                assert len(text) == 64 and set(text) <= set("0123456789abcdef"), (key, text)


def users_of(profile: str, region: str | None, batch: list[dict]) -> list[dict]:
    built = builder(profile, region)
    users = [built.build(row, collections.Counter()) for row in batch]
    columns = built.build_columns(
        lambda source: present_column([source.get(row) for row in batch]), len(batch))
    users += [result.user for result in columns if result is not NOT_BUILT]
    return [user for user in users if user is not None]


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, min_size=1, max_size=4), regions)
def test_openai_users_pass_the_emulators_wire_rules_and_the_validator(batch, region):
    now_ms = time.time_ns() // 1_000_000
    for user in users_of("openai", region, batch):
        assert rules.check_event(event_with(user, now_ms), now_ms) is None, user
        assert check_user(user) is None, user
        assert_hashes_are_lower_hex(user)


@settings(max_examples=200, deadline=None)
@given(st.lists(rows, min_size=1, max_size=4), regions)
def test_scalar_users_pass_the_validator(batch, region):
    for user in users_of("scalar", region, batch):
        assert check_user(user) is None, user
        assert_hashes_are_lower_hex(user)


def test_a_user_not_built_by_the_builder_is_still_checked():
    now_ms = time.time_ns() // 1_000_000
    event = event_with({"ip_address": "not an address"}, now_ms)
    violation = validate_event(event, now_ms)
    assert (violation.reason, violation.detail) == (
        "mapping_error", "user.ip_address must be an IPv4 or IPv6 address")
    assert validate_event(event, now_ms, user_built=True) is None

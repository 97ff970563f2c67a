"""Identifiers and filled fields of sent events (written from the contract's wire keys)."""
from __future__ import annotations

import collections

import pytest

from transforms.coverage import count_sent, coverage_by_type, filled_fields, identifiers_of


@pytest.mark.parametrize(("event", "expected"), [
    ({"type": "order_created"}, []),
    ({"type": "order_created", "oppref": "o"}, ["oppref"]),
    ({"type": "x", "user": {"emails_sha256": ["h"], "phone_numbers_sha256": ["h"]}},
     ["email", "phone"]),
    ({"type": "x", "user": {"external_ids_sha256": ["h"]}}, ["external_id"]),
    ({"type": "x", "user": {"ip_address": "1.2.3.4"}}, []),                   # IP alone: no
    ({"type": "x", "user": {"ip_address": "1.2.3.4", "user_agent": "M"}}, ["ip_and_user_agent"]),
    ({"type": "x", "user": {"email_sha256": "h", "external_id": "c"}},         # scalar profile
     ["email", "external_id"]),
    ({"type": "x", "user": {"android_advertising_id": "a"}}, ["android_id"]),
    ({"type": "x", "oppref": "", "user": {"emails_sha256": []}}, []),          # empty: absent
])
def test_identifiers_of(event, expected):
    assert identifiers_of(event) == expected


def test_filled_fields_name_the_place_in_the_event():
    event = {"id": "o", "type": "order_created", "timestamp_ms": 1, "source_url": "u",
             "data": {"type": "contents", "amount": 1, "currency": "USD"},
             "user": {"cities": ["x"]}}
    assert filled_fields(event) == ["source_url", "data.amount", "data.currency", "user.cities"]


def test_count_sent_and_coverage_by_type():
    events = [{"type": "order_created", "oppref": "o", "user": {"emails_sha256": ["h"]}},
              {"type": "order_created", "user": {"emails_sha256": ["h"]}},
              {"type": "order_created", "oppref": "o", "user": {"emails_sha256": ["h"]}},
              {"type": "lead_created"}]
    counts: collections.Counter = collections.Counter()
    count_sent(events, counts)
    assert counts == {"sent.order_created": 3, "sent.order_created.oppref": 2,
                      "sent.order_created.email": 3, "filled.oppref": 2,
                      "filled.user.emails_sha256": 3, "sent.lead_created": 1}
    table = coverage_by_type(counts)
    assert table["order_created"]["events"] == 3
    assert table["order_created"]["oppref"] == {"count": 2, "share": 0.6667}
    assert table["order_created"]["phone"] == {"count": 0, "share": 0.0}
    assert table["lead_created"]["email"] == {"count": 0, "share": 0.0}

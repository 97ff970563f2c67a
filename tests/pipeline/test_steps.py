"""pipeline.steps.ReplayDeadLetters: a replayed (possibly hand-edited) event is checked again."""
from __future__ import annotations

import time

import pytest
from apache_beam.pvalue import TaggedOutput

from pipeline.coders import EventList
from pipeline.steps import ReplayDeadLetters
from transforms.deadletter import DEAD_LETTERS, DeadLetter
from transforms.events import MappedEvent

GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def replayed_event(**fields) -> dict:
    event = {"id": "order_1", "type": "order_created",
             "timestamp_ms": time.time_ns() // 1_000_000 - 60_000, "action_source": "web",
             "source_url": "https://shop.example.com/checkout",
             "user": {"emails_sha256": ["a" * 64], "android_advertising_id": GAID},
             "data": {"type": "contents"}}
    event.update(fields)
    return event


def replay(event: dict) -> list:
    record = DeadLetter("rejected_by_api", "HTTP 400", "order_1", "dead.jsonl#row=3", event, "px")
    return list(ReplayDeadLetters().process(record))


# Edits a user may make to a dead-letter file that the API would fail a whole batch for.
@pytest.mark.parametrize(("fields", "reason", "detail"), [
    ({"user": {"ip_address": "999.1.1.1"}}, "mapping_error",
     "user.ip_address must be an IPv4 or IPv6 address"),
    ({"user": {"android_advertising_id": GAID.upper()}}, "mapping_error",
     "user.android_advertising_id must be a lower-case canonical UUID (8-4-4-4-12), not all"
     " zeros"),
    ({"user": {"emails_sha256": "a" * 64}}, "mapping_error",
     "user.emails_sha256 must be a list of strings"),
    ({"source_url": ""}, "invalid_source_url",
     "source_url must be an absolute URL with a scheme and a host (https://shop.example.com/"
     "checkout); a relative path or a bare host is rejected by the API"),
])
def test_a_hand_edited_event_is_dead_lettered_again_before_sending(fields, reason, detail):
    event = replayed_event(**fields)

    out = replay(event)

    assert len(out) == 1 and isinstance(out[0], TaggedOutput) and out[0].tag == DEAD_LETTERS
    assert out[0].value == DeadLetter(reason, detail, "order_1", "dead.jsonl#row=3", event, "px")


def test_a_good_event_is_sent_again():
    event = replayed_event()

    assert replay(event) == [EventList([MappedEvent("px", event, "dead.jsonl#row=3")])]

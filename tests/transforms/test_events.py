import pytest

from transforms.events import MappedEvent, dedup_key


def custom(event_id, name):
    return {"id": event_id, "type": "custom", "custom_event_name": name}


@pytest.mark.parametrize("event, key", [
    ({"id": "e1", "type": "order_created"}, ("px", "order_created", "e1")),
    # custom events are keyed by their name, not by the type "custom"
    (custom("e1", "promo_click"), ("px", "promo_click", "e1")),
    (custom("e1", "promo_view"), ("px", "promo_view", "e1")),
    # a custom_event_name on a standard event is not part of its key
    ({"id": "e1", "type": "lead_created", "custom_event_name": "x"}, ("px", "lead_created", "e1")),
])
def test_dedup_key_is_pixel_event_name_and_id(event, key):
    assert dedup_key("px", event) == key
    assert MappedEvent("px", event).dedup_key == key


@pytest.mark.parametrize("a, b, same", [
    (custom("e1", "promo_click"), custom("e1", "promo_view"), False),
    (custom("e1", "promo_click"), custom("e1", "promo_click"), True),
    (custom("e1", "promo_click"), custom("e1", "Promo_Click"), True),   # the API lower-cases
    (custom("e1", "promo_click"), custom("e2", "promo_click"), False),
    ({"id": "e1", "type": "order_created"}, {"id": "e1", "type": "page_viewed"}, False),
    ({"id": "e1", "type": "order_created"}, {"id": "e1", "type": "order_created"}, True),
])
def test_two_events_share_a_key_only_with_the_same_name_and_id(a, b, same):
    assert (dedup_key("px", a) == dedup_key("px", b)) is same


def test_the_pixel_is_part_of_the_key():
    event = custom("e1", "promo_click")
    assert dedup_key("px_1", event) != dedup_key("px_2", event)

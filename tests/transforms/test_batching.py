import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.batching import RequestBatcher
from transforms.events import MappedEvent


def mapped(event_id, event_type="order_created", pixel="px_1"):
    return MappedEvent(pixel_id=pixel, event={"id": event_id, "type": event_type}, source=None)


def ids(batch):
    return [m.event["id"] for m in batch]


def test_full_requests_come_out_as_soon_as_they_fill():
    batcher = RequestBatcher(batch_size=2)
    assert batcher.add(mapped("a")) is None
    assert ids(batcher.add(mapped("b"))) == ["a", "b"]
    assert batcher.add(mapped("c")) is None
    assert [ids(b) for b in batcher.flush()] == [["c"]]
    assert batcher.flush() == []


def test_requests_are_per_pixel():
    batcher = RequestBatcher(batch_size=3)
    full = batcher.add_all([mapped("a", pixel="p1"), mapped("b", pixel="p2"), mapped("c", pixel="p1")])
    assert full == []
    flushed = {b[0].pixel_id: ids(b) for b in batcher.flush()}
    assert flushed == {"p1": ["a", "c"], "p2": ["b"]}


def test_same_type_and_id_twice_in_one_request_keeps_the_first():
    batcher = RequestBatcher(batch_size=10)
    batcher.add_all([mapped("a"), mapped("a"), mapped("a", "page_viewed"), mapped("b")])
    assert [ids(b) for b in batcher.flush()] == [["a", "a", "b"]]
    assert batcher.duplicates == 1


def test_same_id_in_the_next_request_is_not_a_duplicate_within_a_request():
    batcher = RequestBatcher(batch_size=1)
    assert len(batcher.add_all([mapped("a"), mapped("a")])) == 2
    assert batcher.duplicates == 0


@pytest.mark.parametrize("size", [0, 1001, -5])
def test_batch_size_outside_the_api_limit_is_refused(size):
    with pytest.raises(ValueError, match="1..1000"):
        RequestBatcher(batch_size=size)


def mapped_custom(event_id, name, pixel="px_1"):
    return MappedEvent(pixel_id=pixel, source=None,
                       event={"id": event_id, "type": "custom", "custom_event_name": name})


@pytest.mark.parametrize("events, kept, duplicates", [
    # same id, different custom names: two events, both sent
    ([("e1", "promo_click"), ("e1", "promo_view")], [("e1", "promo_click"), ("e1", "promo_view")], 0),
    # same id, same custom name: the first wins
    ([("e1", "promo_click"), ("e1", "promo_click")], [("e1", "promo_click")], 1),
])
def test_custom_events_in_one_request_are_keyed_by_their_name(events, kept, duplicates):
    batcher = RequestBatcher(batch_size=10)
    batcher.add_all([mapped_custom(i, n) for i, n in events])
    [batch] = batcher.flush()
    assert [(m.event["id"], m.event["custom_event_name"]) for m in batch] == kept
    assert batcher.duplicates == duplicates


_EVENTS = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),
                             st.sampled_from(["order_created", "page_viewed"]),
                             st.sampled_from(["px_1", "px_1", "px_2"])), max_size=40)


@settings(max_examples=300, deadline=None)
@given(calls=st.lists(_EVENTS, max_size=4), size=st.integers(1, 5))
def test_add_all_is_add_one_event_at_a_time(calls, size):
    """add_all's one-pixel loop gives the requests, remainder and duplicate count that `add`
    gives event by event, across calls (an open request carries over to the next call)."""
    by_all, by_one = RequestBatcher(size), RequestBatcher(size)
    for call in calls:
        events = [mapped(event_id, event_type, pixel) for event_id, event_type, pixel in call]
        expected = [batch for batch in (by_one.add(event) for event in events) if batch]
        assert by_all.add_all(iter(events)) == expected
        assert by_all.duplicates == by_one.duplicates
    assert by_all.flush() == by_one.flush()

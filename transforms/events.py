"""Facts about the CAPI event (contract sections 2 and 3), shared by the mapper, the validator,
the batching and the client.

The emulator does not use them: it is the test oracle, with its own copy written from the
contract (connectors/emulator/rules.py), so a fact wrong here is not wrong there too.
"""
from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, NamedTuple

MAX_EVENTS_PER_REQUEST = 1000
DEFAULT_ENDPOINT = "https://bzr.openai.com/v1/events"
INTEGRATION_SOURCE = "capi-sync"

MAX_AGE_MS = 7 * 24 * 3600 * 1000        # events older than 7 days are rejected
MAX_FUTURE_MS = 10 * 60 * 1000           # ... and more than 10 minutes ahead

CONTENTS = "contents"
CUSTOMER_ACTION = "customer_action"
PLAN_ENROLLMENT = "plan_enrollment"
CUSTOM = "custom"

DATA_TYPE_BY_EVENT_TYPE = {
    "page_viewed": CONTENTS,
    "contents_viewed": CONTENTS,
    "items_added": CONTENTS,
    "checkout_started": CONTENTS,
    "order_created": CONTENTS,
    "lead_created": CUSTOMER_ACTION,
    "registration_completed": CUSTOMER_ACTION,
    "appointment_scheduled": CUSTOMER_ACTION,
    "app_installed": CUSTOMER_ACTION,
    "app_opened": CUSTOMER_ACTION,
    "subscription_created": PLAN_ENROLLMENT,
    "trial_started": PLAN_ENROLLMENT,
    "custom": CUSTOM,
}
EVENT_TYPES = frozenset(DATA_TYPE_BY_EVENT_TYPE)
MOBILE_APP_ONLY_TYPES = frozenset({"app_installed", "app_opened"})
ACTION_SOURCES = frozenset(
    {"web", "mobile_app", "offline", "physical_store", "phone_call", "email", "other"})


class MappedEvent(NamedTuple):
    """One wire-ready event on its way to a request, with where it came from.

    `event` is the JSON-ready CAPI event (user fields already hashed); `source` is the row
    reference used in dead letters ("export.parquet#row=17"). A NamedTuple, not a frozen
    dataclass: one is made per row, and a frozen dataclass's __init__ costs three times as much.
    """

    pixel_id: str | None
    event: dict[str, Any]
    source: str | None = None

    @property
    def dedup_key(self) -> tuple[str | None, str | None, str | None]:
        return dedup_key(self.pixel_id, self.event)


# A MappedEvent's fields read in C, for map() over a batch of them (the sink, the batcher).
event_of = operator.attrgetter("event")
pixel_id_of = operator.attrgetter("pixel_id")


def dedup_key(pixel_id: str | None, event: Mapping[str, Any]
              ) -> tuple[str | None, str | None, str | None]:
    """The key the API deduplicates on: (pixel, event name, id).

    The event name is `type` for the standard types and `custom_event_name` for custom events,
    so two custom events sharing an id under different names are two events:
    ("px", "promo_click", "e1") and ("px", "promo_view", "e1"). The API keeps the first event of
    a key and ignores later ones. The API lower-cases custom names, so the key does too (the
    mapper sends them lower-cased; a hand-edited replay file may not). A custom name can never
    equal a standard type (validate.py), so the two kinds of name cannot collide.
    """
    event_type = event.get("type")
    if event_type != CUSTOM:
        return (pixel_id, event_type, event.get("id"))
    name = event.get("custom_event_name")
    return (pixel_id, name.lower() if isinstance(name, str) else name, event.get("id"))

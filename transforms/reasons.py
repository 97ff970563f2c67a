"""Reason codes: the one place where dead-letter and skip reasons are spelled.

The mapper, the validator, the sink, the report and the tests all import these names, so a
reason a user greps for in a dead-letter file is the same string everywhere.
"""

# Dead-letter reasons (contract section 7). Stable: users alert on these strings.
MISSING_ID = "missing_id"
INVALID_TYPE = "invalid_type"
INVALID_CUSTOM_EVENT_NAME = "invalid_custom_event_name"
INVALID_TIMESTAMP = "invalid_timestamp"
STALE_TIMESTAMP = "stale_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
MISSING_SOURCE_URL = "missing_source_url"
INVALID_SOURCE_URL = "invalid_source_url"   # not an absolute URL with a scheme and a host
INVALID_ACTION_SOURCE = "invalid_action_source"
INVALID_AMOUNT = "invalid_amount"
MISSING_CURRENCY = "missing_currency"
INVALID_CURRENCY = "invalid_currency"
INVALID_CONTENTS = "invalid_contents"
MAPPING_ERROR = "mapping_error"
REJECTED_BY_API = "rejected_by_api"
RETRIES_EXHAUSTED = "retries_exhausted"

DEAD_LETTER_REASONS = (
    MISSING_ID, INVALID_TYPE, INVALID_CUSTOM_EVENT_NAME, INVALID_TIMESTAMP, STALE_TIMESTAMP,
    FUTURE_TIMESTAMP, MISSING_SOURCE_URL, INVALID_SOURCE_URL, INVALID_ACTION_SOURCE, INVALID_AMOUNT,
    MISSING_CURRENCY, INVALID_CURRENCY, INVALID_CONTENTS, MAPPING_ERROR, REJECTED_BY_API,
    RETRIES_EXHAUSTED,
)

# Skip reasons: rows left out on purpose. Counted in the report, never dead-lettered.
EXCLUDED_EVENT = "excluded_event"   # the mapping's `exclude` list names this event
NO_CONSENT = "no_consent"           # the mapping's consent column is not truthy
DUPLICATE = "duplicate"             # same dedup key (events.dedup_key) already in the request / the run
FILTERED_OUT = "filtered_out"       # the mapping's `filter` does not keep this row
GROUPED = "grouped_into_event"      # group_by: a row merged into its group's one event

SKIP_REASONS = (EXCLUDED_EVENT, NO_CONSENT, DUPLICATE, FILTERED_OUT, GROUPED)

"""The reason codes are the contract's (section 7), spelled once in transforms/reasons.py."""
from transforms import reasons

# Written out from the contract, not read from reasons.py.
CONTRACT_DEAD_LETTER_REASONS = {
    "missing_id", "invalid_type", "invalid_custom_event_name", "invalid_timestamp",
    "stale_timestamp", "future_timestamp", "missing_source_url", "invalid_source_url",
    "invalid_action_source", "invalid_amount", "missing_currency", "invalid_currency",
    "invalid_contents", "mapping_error", "rejected_by_api", "retries_exhausted",
}


def test_dead_letter_reasons_are_the_contracts():
    assert len(reasons.DEAD_LETTER_REASONS) == len(set(reasons.DEAD_LETTER_REASONS))
    assert set(reasons.DEAD_LETTER_REASONS) == CONTRACT_DEAD_LETTER_REASONS
    assert reasons.INVALID_SOURCE_URL == "invalid_source_url"


def test_skip_reasons_are_not_dead_letter_reasons():
    assert not set(reasons.SKIP_REASONS) & set(reasons.DEAD_LETTER_REASONS)
    assert reasons.DUPLICATE == "duplicate"

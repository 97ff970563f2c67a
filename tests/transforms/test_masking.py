import pytest

from transforms.deadletter import DeadLetter
from transforms.errors import CapiSyncError, ConfigError, MappingFileError
from transforms.masking import mask_secrets

KEY = "sk-svcacct-Zq9_x-7Hh2kP0aLmN4bVcX1sT6yWe3R8uJ5oI"


@pytest.mark.parametrize("text, masked", [
    (KEY, "sk-svcacct-[masked]"),
    (f"Bearer {KEY}", "Bearer sk-svcacct-[masked]"),
    (f"OPENAI_CAPI_API_KEY={KEY}", "OPENAI_CAPI_API_KEY=sk-svcacct-[masked]"),
    (f" {KEY}", " sk-svcacct-[masked]"),
    (f"['--api-key', '{KEY}']", "['--api-key', 'sk-svcacct-[masked]']"),
    (f"http://u:{KEY}@127.0.0.1/v1?k={KEY}", "http://u:sk-svcacct-[masked]@127.0.0.1/v1?k=sk-svcacct-[masked]"),
    ("sk-proj-abc123DEF456", "sk-proj-[masked]"),
    ("sk-admin-0123456789", "sk-admin-[masked]"),
    ("legacy sk-0123456789abcdefABCDEF0123456789abcdefABCDEF01", "legacy sk-[masked]"),
    ("KEY_sk-svcacct-abc", "KEY_sk-svcacct-[masked]"),
    ("sk-svcacct-wrong", "sk-svcacct-[masked]"),
    # not keys: our own hints name the kind; words that merely contain "sk-"
    ("create a Conversions API key (sk-svcacct-…) under Conversions",
     "create a Conversions API key (sk-svcacct-…) under Conversions"),
    ("does not start with sk-svcacct-", "does not start with sk-svcacct-"),
    ("an sk-proj- key", "an sk-proj- key"),
    ("task-runner-17 and disk-full", "task-runner-17 and disk-full"),
    ("no key here", "no key here"),
    ("", ""),
])
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked
    assert mask_secrets(masked) == masked          # idempotent


def test_exact_secret_values_are_masked_whatever_they_look_like():
    assert mask_secrets("sent key=hunter2-not-sk in the header", ["hunter2-not-sk"]) == (
        "sent key=[masked] in the header")
    assert mask_secrets("abc", [""]) == "abc"      # an empty secret masks nothing


@pytest.mark.parametrize("error_class", [CapiSyncError, ConfigError, MappingFileError])
def test_the_exception_family_masks_its_message(error_class):
    error = error_class(f"No API key: environment variable {KEY} is not set")
    assert KEY not in str(error) and "sk-svcacct-[masked]" in str(error)
    assert KEY not in repr(error)


def test_a_dead_letter_masks_its_detail_and_source_but_not_the_event():
    event = {"id": "e1", "source_url": f"https://shop.example/p/{KEY}"}   # replayable as is
    letter = DeadLetter("rejected_by_api", f"HTTP 404 from http://x/?k={KEY}", "e1",
                        f"gs://b/{KEY}.parquet#row=1", event)
    line = letter.to_json()
    assert letter.detail == "HTTP 404 from http://x/?k=sk-svcacct-[masked]"
    assert letter.source == "gs://b/sk-svcacct-[masked].parquet#row=1"
    assert letter.event == event
    assert line.count(KEY) == 1                   # only inside the event
    assert DeadLetter.from_json(line) == letter

import pathlib
import re

import pytest

from transforms import metrics, reasons

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("connectors", "pipeline", "transforms")


@pytest.mark.parametrize("name_of, argument, expected", [
    (metrics.dead_lettered, reasons.REJECTED_BY_API, "dead_lettered.rejected_by_api"),
    (metrics.skipped, reasons.DUPLICATE, "skipped.duplicate"),
    (metrics.http_status, "429", "http_429"),
    (metrics.http_status, "timeout", "http_timeout"),
    (metrics.mapper, "timestamp_defaulted", "mapper.timestamp_defaulted"),
])
def test_counter_names(name_of, argument, expected):
    assert name_of(argument) == expected


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_the_namespace_and_counter_names_are_spelled_only_in_the_names_module():
    # One vocabulary: a counter built from a literal ("capi", "dead_letter_" + reason, ...)
    # in another module is a second spelling that goes stale.
    offenders = []
    for name, text in _sources():
        if name == "transforms/metrics.py":
            continue
        for line_number, line in enumerate(text.splitlines(), 1):
            if re.search(r"Metrics\.counter\(\s*['\"]", line) or \
                    re.search(r"['\"](dead_letter_[{'\"]|dead_lettered\.|dead_letter\.)", line) or \
                    re.search(r"NAMESPACE\s*=", line):
                offenders.append(f"{name}:{line_number}: {line.strip()}")
    assert offenders == []


def test_the_dead_letters_tag_is_defined_once():
    definitions = [name for name, text in _sources()
                   if re.search(r"^DEAD_LETTERS\s*=\s*['\"]", text, re.MULTILINE)]
    assert definitions == ["transforms/deadletter.py"]

import collections
import hashlib
import pickle

import pytest

from transforms.paths import ValueSource, compile_reference
from transforms.user_fields import LOGICAL_FIELDS, PROFILES, UserBuilder


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def builder(profile: str = "openai", region: str | None = None, **paths: str) -> UserBuilder:
    """A UserBuilder reading each logical field from the column of the same name by default."""
    fields = paths or {logical: logical for logical in LOGICAL_FIELDS}
    sources = tuple((logical, ValueSource(f"user.fields.{logical}", (compile_reference(path),)))
                    for logical, path in fields.items())
    return UserBuilder(profile, sources, region)


def build(row, profile="openai", region=None):
    counters = collections.Counter()
    return builder(profile, region).build(row, counters), counters


ROW = {
    "email": " John.Doe@Example.COM ",
    "phone": "+1 (415) 555-0100",
    "external_id": " Cust-001 ",
    "first_name": "Mary-Jane",
    "last_name": "O'Brien",
    "country": "United States",
    "city": "San Francisco",
    "region": "California",
    "postal_code": "94105-1234",
    "obref": "ob_123",
    "android_advertising_id": " 38400000-8CF0-11BD-B23E-10B96E40000D ",
    "ip_address": "2001:DB8::0:1",
    "user_agent": "Mozilla/5.0",
}


def test_openai_profile_wire_shape():
    user, counters = build(ROW)
    assert user == {
        "emails_sha256": [sha("john.doe@example.com")],
        "phone_numbers_sha256": [sha("14155550100")],
        "external_ids_sha256": [sha("Cust-001")],
        "first_names_sha256": [sha("maryjane")],
        "last_names_sha256": [sha("obrien")],
        "countries": ["US"],
        "cities": ["san francisco"],
        "regions": ["california"],
        "postal_codes": ["94105-1234"],
        "obref": "ob_123",
        "android_advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d",
        "ip_address": "2001:db8::1",
        "user_agent": "Mozilla/5.0",
    }
    assert counters == {}


def test_scalar_profile_wire_shape():
    user, counters = build(ROW, profile="scalar")
    assert user == {
        "email_sha256": sha("john.doe@example.com"),
        "phone_number_sha256": sha("14155550100"),
        "external_id_sha256": sha("Cust-001"),
        "external_id": "Cust-001",
        "first_name_sha256": sha("maryjane"),
        "last_name_sha256": sha("obrien"),
        "country_sha256": sha("us"),
        "city_sha256": sha("sanfrancisco"),
        "state_sha256": sha("ca"),
        "zip_code_sha256": sha("94105"),
        "ip_address": "2001:db8::1",
        "user_agent": "Mozilla/5.0",
    }
    assert counters == {}


# (logical field, source value, row country, openai (key, value), scalar (key, value))
CASES = [
    ("email", "  Jo@X.com", None, ("emails_sha256", [sha("jo@x.com")]),
     ("email_sha256", sha("jo@x.com"))),
    ("phone", "020 7946 0018", "GB", ("phone_numbers_sha256", [sha("442079460018")]),
     ("phone_number_sha256", sha("442079460018"))),
    ("first_name", "JOSÉ", None, ("first_names_sha256", [sha("josé")]),
     ("first_name_sha256", sha("josé"))),
    ("country", "usa", None, ("countries", ["US"]), ("country_sha256", sha("us"))),
    ("city", "New York", None, ("cities", ["new york"]), ("city_sha256", sha("newyork"))),
    ("region", "New York", "US", ("regions", ["new york"]), ("state_sha256", sha("ny"))),
    ("region", "Bayern", "DE", ("regions", ["bayern"]), ("state_sha256", sha("bayern"))),
    ("postal_code", "SW1A 1AA", "GB", ("postal_codes", ["SW1A 1AA"]),
     ("zip_code_sha256", sha("sw1a1aa"))),
    ("postal_code", "94105", "US", ("postal_codes", ["94105"]),
     ("zip_code_sha256", sha("94105"))),
    ("ip_address", "203.0.113.7", None, ("ip_address", "203.0.113.7"),
     ("ip_address", "203.0.113.7")),
]


@pytest.mark.parametrize("profile", ["openai", "scalar"])
@pytest.mark.parametrize("logical, value, country, openai, scalar", CASES)
def test_each_field_in_both_profiles(profile, logical, value, country, openai, scalar):
    row = {logical: value}
    if country and logical != "country":
        row["country"] = country
    user, _ = build(row, profile)
    key, expected = openai if profile == "openai" else scalar
    assert user[key] == expected


@pytest.mark.parametrize("profile, key", [("openai", "emails_sha256"), ("scalar", "email_sha256")])
def test_prehashed_upper_case_email_passes_through_lower_cased(profile, key):
    prehashed = sha("john.doe@example.com").upper()
    user, _ = build({"email": prehashed}, profile)
    expected = prehashed.lower()
    assert user[key] == ([expected] if profile == "openai" else expected)
    assert sha(expected) not in str(user)          # not hashed a second time


def test_prehashed_phone_passes_through():
    prehashed = sha("14155550100")
    user, _ = build({"phone": prehashed})
    assert user["phone_numbers_sha256"] == [prehashed]


def test_national_phone_without_country_is_left_out_and_counted():
    user, counters = build({"phone": "020 7946 0018", "email": "a@b.c"})
    assert "phone_numbers_sha256" not in user
    assert counters["user.phone.invalid"] == 1


def test_national_phone_uses_default_region():
    user, _ = build({"phone": "(415) 555-0100"}, region="US")
    assert user == {"phone_numbers_sha256": [sha("14155550100")]}


def test_row_country_wins_over_default_region():
    user, _ = build({"phone": "020 7946 0018", "country": "GB"}, region="US")
    assert user["phone_numbers_sha256"] == [sha("442079460018")]


def test_list_values_are_deduplicated_and_capped_at_three():
    emails = ["A@x.com", "a@x.com ", "bad", "b@x.com", "c@x.com", "d@x.com", None]
    user, counters = build({"email": emails})
    assert user["emails_sha256"] == [sha("a@x.com"), sha("b@x.com"), sha("c@x.com")]
    assert counters == {"user.email.invalid": 1, "user.email.over_limit": 1}


def test_list_value_in_scalar_profile_takes_the_first_valid():
    user, counters = build({"email": ["bad", "a@x.com", "b@x.com"]}, profile="scalar")
    assert user == {"email_sha256": sha("a@x.com")}
    assert counters == {"user.email.invalid": 1, "user.email.over_limit": 1}


def test_invalid_values_are_left_out_and_counted_per_field():
    user, counters = build({"email": "nope", "ip_address": "999.1.1.1", "country": "Narnia",
                            "user_agent": "UA"})
    assert user == {"user_agent": "UA"}
    assert counters == {"user.email.invalid": 1, "user.ip_address.invalid": 1,
                        "user.country.invalid": 1}


@pytest.mark.parametrize("value, sent", [
    ("38400000-8cf0-11bd-b23e-10b96e40000d", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    ("38400000-8CF0-11BD-B23E-10B96E40000D", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    ("00000000-0000-0000-0000-000000000000", None),      # limit ad tracking
    ("38400000-8cf0-11bd-b23e-10b96e40000", None),       # one digit short
    ("38400000-8cf0-11bd-b23e-10b96e40000d0", None),     # one digit long
    ("384000008cf011bdb23e10b96e40000d", None),          # no hyphens: not the canonical form
    ("{38400000-8cf0-11bd-b23e-10b96e40000d}", None),
    ("38400000-8cf0-11bd-b23e-10b96e40000g", None),      # not hex
    ("not-an-id", None),
])
def test_android_advertising_id_is_sent_lower_case_or_left_out_and_counted(value, sent):
    user, counters = build({"android_advertising_id": value, "user_agent": "UA"})
    assert user.get("android_advertising_id") == sent
    assert counters == ({} if sent else {"user.android_advertising_id.invalid": 1})


def test_android_advertising_id_is_not_part_of_the_scalar_profile():
    user, counters = build({"android_advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d",
                            "user_agent": "UA"}, profile="scalar")
    assert user == {"user_agent": "UA"}
    assert counters == {}


@pytest.mark.parametrize("value, sent", [
    ("D\u2019Angelo", "d\u2019angelo"),
    ("D'Angelo", "dangelo"),
    ("Anne\u2013Marie", "anne\u2013marie"),
    ("Anne-Marie", "annemarie"),
    ("Zoe\u0308", "zo\u00eb"),          # decomposed: hashes like the composed form
])
def test_names_keep_non_ascii_punctuation(value, sent):
    user, _ = build({"first_name": value, "last_name": value})
    assert user == {"first_names_sha256": [sha(sent)], "last_names_sha256": [sha(sent)]}


def test_user_is_none_when_nothing_is_left():
    user, counters = build({"email": "   ", "phone": None})
    assert user is None


def test_scalar_external_id_invalid_is_counted_once():
    user, counters = build({"external_id": ["  "]}, profile="scalar")
    assert user is None
    assert counters == {"user.external_id.invalid": 1}


def test_profiles_cover_every_logical_field_they_name():
    for profile in PROFILES.values():
        assert {wire.logical for wire in profile} <= set(LOGICAL_FIELDS)


def test_builder_pickles():
    original = builder("scalar", "US")
    clone = pickle.loads(pickle.dumps(original))
    assert clone.build(ROW, collections.Counter()) == original.build(ROW, collections.Counter())

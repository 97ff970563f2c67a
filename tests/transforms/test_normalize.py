import random
import re
import unicodedata

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transforms import normalize as n

# --- contract section 6, profile openai -----------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("  John.Doe@Example.COM ", "john.doe@example.com"),
    ("ÉLODIE@EXAMPLE.FR", "élodie@example.fr"),
    ("no-at-sign.example.com", None),
    ("two@at@example.com", None),
    ("@example.com", None),
    ("someone@", None),
    ("   ", None),
    (42, None),
    (None, None),
])
def test_normalize_email(value, expected):
    assert n.normalize_email(value) == expected


@pytest.mark.parametrize("value, region, expected", [
    ("+1 (415) 555-0100", None, "14155550100"),
    ("020 7946 0018", "GB", "442079460018"),
    ("+44 20 7946 0018", None, "442079460018"),
    ("+44 (0)20 7946 0018", None, "442079460018"),
    ("(415) 555-0100", "US", "14155550100"),
    ("06 12 34 56 78", "FR", "33612345678"),
    ("00 44 20 7946 0018", "FR", "442079460018"),     # international prefix dialled from France
    # the published examples: a leading 00 is an international prefix, (0) a national one
    ("0044 20 7946 0958", None, "442079460958"),
    ("+44 (0) 20 7946 0958", None, "442079460958"),
    ("0044 20 7946 0958", "GB", "442079460958"),
    ("0044 20 7946 0958", "US", "442079460958"),     # US dials out with 011, but 00 is read too
    ("0011 44 20 7946 0958", "AU", "442079460958"),  # AU's own prefix 0011
    ("0044-20-7946-0958", "DE", "442079460958"),
    ("00 1 415 555 0100", None, "14155550100"),
    # 8-15 digits with the country code, both sides of each bound
    ("+683 4002", None, None),                         # Niue, 7 digits: left out
    ("+290 22334", None, "29022334"),                  # Saint Helena, 8 digits
    ("+49 30 12345678901", None, "493012345678901"),   # 15 digits
    ("+49 30 123456789012", None, None),               # 16 digits: left out
    ("+49 30 1234567890123", None, None),              # 17 digits: left out
    ("020 7946 0018", None, None),                     # national number without region: left out
    ("+1 415", None, None),                            # not a possible number
    ("tel: +1-415-555-0100", None, "14155550100"),
    ("not a phone", "US", None),
    (14155550100, "US", "14155550100"),
])
def test_normalize_phone(value, region, expected):
    assert n.normalize_phone(value, region) == expected


@pytest.mark.parametrize("value, expected", [
    ("Mary-Jane", "maryjane"),
    ("O'Brien", "obrien"),
    ("  Anne Marie ", "annemarie"),
    ("JOSÉ", "josé"),
    ("Jean-François", "jeanfrançois"),
    ("-- ..", None),
    # ASCII punctuation and all whitespace go; every non-ASCII character stays
    ("D\u2019Angelo", "d\u2019angelo"),          # typographic apostrophe kept
    ("D'Angelo", "dangelo"),                      # ASCII apostrophe removed
    ("Anne\u2013Marie", "anne\u2013marie"),      # en dash kept
    ("Anne-Marie", "annemarie"),
    ("«Zoë»", "«zoë»"),                           # guillemets kept
    ("Zoë", "zoë"),
    ("Ñúñez", "ñúñez"),
    ("St. John-Smith, Jr.", "stjohnsmithjr"),
    ("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~Jo", "jo"),   # every ASCII punctuation character
    ("Jo\u00a0Ann", "joann"),                     # no-break space is whitespace
    ("Jo\u3000Ann\tLee\n", "joannlee"),            # ideographic space, tab, newline
    ("李 小龍", "李小龍"),
    ("\u2019\u2013", "\u2019\u2013"),             # only non-ASCII punctuation: kept, not empty
])
def test_normalize_name(value, expected):
    assert n.normalize_name(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("38400000-8cf0-11bd-b23e-10b96e40000d", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    (" 38400000-8CF0-11BD-B23E-10B96E40000D\n", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    ("00000000-0000-0000-0000-000000000000", None),
    ("384000008cf011bdb23e10b96e40000d", None),
    ("38400000-8cf0-11bd-b23e-10b96e40000", None),
    ("38400000_8cf0_11bd_b23e_10b96e40000d", None),
    ("", None),
    (12345, None),
    (None, None),
])
def test_normalize_android_advertising_id(value, expected):
    assert n.normalize_android_advertising_id(value) == expected


@pytest.mark.parametrize("nfc", ["José", "Zoë", "Chloé Lefèvre", "Ångström", "Đặng"])
def test_nfd_names_equal_nfc_names(nfc):
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert n.normalize_name(nfd) == n.normalize_name(nfc)
    assert n.normalize_city(nfd) == n.normalize_city(nfc)
    assert n.normalize_email(nfd + "@example.com") == n.normalize_email(nfc + "@example.com")


@pytest.mark.parametrize("value, expected", [
    ("usa", "US"), ("United States", "US"), ("us", "US"), ("US", "US"), ("GBR", "GB"),
    ("germany", "DE"), ("France", "FR"), ("Narnia", None), ("", None), ("U", None),
])
def test_normalize_country(value, expected):
    assert n.normalize_country(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("San Francisco", "san francisco"),
    ("  MÜNCHEN ", "münchen"),
    ("x" * 200, "x" * 128),
    ("   ", None),
])
def test_normalize_city_and_region(value, expected):
    assert n.normalize_city(value) == expected
    assert n.normalize_region(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("94105-1234", "94105-1234"),
    (" SW1A 1AA ", "SW1A 1AA"),
    ("75#001", "75001"),
    (94105, "94105"),
    (94105.0, "94105"),
    ("1" * 40, "1" * 32),
    ("###", None),
])
def test_normalize_postal_code(value, expected):
    assert n.normalize_postal_code(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("  Cust-001 ", "Cust-001"), (12345, "12345"), ("", None), ([1], None),
])
def test_normalize_external_id(value, expected):
    assert n.normalize_external_id(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("203.0.113.7", "203.0.113.7"),
    (" 2001:DB8:0:0::1 ", "2001:db8::1"),
    # IPv4-mapped: RFC 5952's mixed notation on every Python (3.10-3.12 print ::ffff:c000:201)
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ("::FFFF:c000:0201", "::ffff:192.0.2.1"),
    ("::ffff:0:0", "::ffff:0.0.0.0"),
    ("::192.0.2.1", "::c000:201"),              # IPv4-compatible (deprecated): not mapped
    ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"),
    ("256.1.1.1", None),
    ("01.2.3.4", None),
    ("localhost", None),
])
def test_normalize_ip_address(value, expected):
    assert n.normalize_ip_address(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("Mozilla/5.0 (X11)", "Mozilla/5.0 (X11)"), ("  ", None), ("", None),
])
def test_normalize_user_agent_and_obref_unchanged(value, expected):
    assert n.normalize_user_agent(value) == expected
    assert n.normalize_opaque(value) == expected


# --- contract section 6, profile scalar ----------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("San Francisco", "sanfrancisco"), ("Saint-Étienne", "saintétienne"), ("123", None),
])
def test_scalar_city_letters(value, expected):
    assert n.normalize_city_letters(value) == expected


@pytest.mark.parametrize("value, country, expected", [
    ("California", "US", "ca"),
    ("new york", None, "ny"),
    ("District of Columbia", "US", "dc"),
    ("CA", "US", "ca"),
    ("Île-de-France", "FR", "îledefrance"),
    ("Washington", "GB", "washington"),      # the US table only applies to US (or unknown) rows
])
def test_scalar_state(value, country, expected):
    assert n.normalize_state_letters(value, country) == expected


@pytest.mark.parametrize("value, country, expected", [
    ("94105-1234", "US", "94105"),
    ("941051234", None, "94105"),
    ("94105", "US", "94105"),
    ("SW1A 1AA", "GB", "sw1a1aa"),
    ("100-0001", "JP", "1000001"),
])
def test_scalar_zip(value, country, expected):
    assert n.normalize_zip_letters(value, country) == expected


@pytest.mark.parametrize("value, expected", [("United States", "us"), ("gbr", "gb"), ("?", None)])
def test_scalar_country_lower(value, expected):
    assert n.normalize_country_lower(value) == expected


@pytest.mark.parametrize("text, is_hash", [
    ("a" * 64, True), ("A1" * 32, True), ("g" * 64, False), ("a" * 63, False),
])
def test_is_sha256_hex(text, is_hash):
    assert n.is_sha256_hex(text) is is_hash


# --- properties --------------------------------------------------------------------------------

TEXT = st.text(max_size=40)
IDEMPOTENT = [n.normalize_email, n.normalize_name, n.normalize_city, n.normalize_postal_code,
              n.normalize_country, n.normalize_external_id, n.normalize_opaque,
              n.normalize_ip_address, n.normalize_city_letters, n.normalize_country_lower,
              n.normalize_state_letters, n.normalize_zip_letters,
              n.normalize_android_advertising_id]


@pytest.mark.parametrize("normalize", IDEMPOTENT, ids=lambda f: f.__name__)
@settings(max_examples=150, deadline=None)
@given(value=TEXT)
def test_normalizing_twice_equals_once(normalize, value):
    once = normalize(value)
    if once is not None:
        assert normalize(once) == once


@settings(max_examples=60, deadline=None)
@given(local=st.text(min_size=1, max_size=10), domain=st.text(min_size=1, max_size=10))
def test_email_idempotent_on_email_shaped_text(local, domain):
    once = n.normalize_email(f"{local}@{domain}")
    if once is not None:
        assert n.normalize_email(once) == once


@settings(max_examples=100, deadline=None)
@given(digits=st.text(alphabet="0123456789 -()", min_size=1, max_size=20),
       region=st.sampled_from([None, "US", "GB", "FR", "DE", "JP", "IT", "BR"]))
@example(digits="0000001", region="DE")     # +49 with five leading zeros: left out
def test_phone_normalizing_its_e164_form_again_is_stable(digits, region):
    once = n.normalize_phone(digits, region)
    if once is not None:
        assert n.normalize_phone("+" + once) == once


def _phone_samples(count: int, seed: int = 7):
    """Example numbers of every region, last digits randomized, in several spellings."""
    rng = random.Random(seed)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    kinds = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
    samples = []
    while len(samples) < count:
        home = rng.choice(regions)
        example = phonenumbers.example_number_for_type(home, rng.choice(kinds))
        if example is None:
            continue
        nsn = phonenumbers.national_significant_number(example)
        k = rng.randint(0, min(4, len(nsn)))
        nsn = nsn[:len(nsn) - k] + "".join(rng.choice("0123456789") for _ in range(k))
        number = phonenumbers.PhoneNumber(country_code=example.country_code,
                                          national_number=int(nsn),
                                          italian_leading_zero=example.italian_leading_zero)
        form = rng.random()
        region = rng.choice(regions + [None])
        if form < 0.3:
            text = f"+{example.country_code} {nsn}"
        elif form < 0.6:
            text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            region = home if rng.random() < 0.8 else region
        elif form < 0.7:
            text = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
            text = ("+" + text) if rng.random() < 0.5 else text
        elif form < 0.8:   # dialled with an international prefix, from a region that uses it
            region = rng.choice(["FR", "GB", "DE", "US", "AU", "JP", "BR", None])
            prefix = rng.choice(["00", "011", "0011", "010"])
            text = f"{prefix} {example.country_code} {nsn}"
        else:
            text = f"{example.country_code}{nsn}"
            region = home if rng.random() < 0.5 else region
        samples.append((text, region))
    return samples


def test_phone_fast_path_matches_phonenumbers():
    """The fast path must give exactly what phonenumbers.parse + is_possible_number give."""
    mismatches = [(text, region) for text, region in _phone_samples(4000)
                  if n._phone_digits(text, region) != n._phonenumbers_digits(text, region)]
    assert mismatches == []


@pytest.mark.parametrize("text, region, expected", [
    ("0044 20 7946 0958", None, "442079460958"),
    ("+44 (0) 20 7946 0958", None, "442079460958"),
    ("0044 20 7946 0958", "US", "442079460958"),
    ("00 1 415 555 0100", "FR", "14155550100"),
    ("0044 20 7946 0958", "GB", "442079460958"),
    ("0011 44 20 7946 0958", "AU", "442079460958"),
    ("011 44 20 7946 0958", "US", "442079460958"),
    ("+290 22334", None, "29022334"),
    ("+683 4002", None, None),               # possible, but 7 digits: left out after the fast path
])
def test_international_numbers_take_the_fast_path(monkeypatch, text, region, expected):
    def reference_not_wanted(*args):
        raise AssertionError("took the phonenumbers path")

    monkeypatch.setattr(n, "_phonenumbers_digits", reference_not_wanted)
    assert n.normalize_phone(text, region) == expected


# The definition the quick checks must keep: canonical dotted IPv4, and the postal-code rule.
_CANONICAL_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
                             r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
_octet_text = st.one_of(st.integers(0, 300).map(str), st.integers(0, 99).map(lambda i: f"0{i}"),
                        st.text("0123456789١ x", max_size=4))


@settings(max_examples=3000, deadline=None)
@given(st.lists(_octet_text, min_size=1, max_size=6).map(".".join) | st.text(max_size=20))
@example("1.2.3.4\x00")
@example("0x7f.0.0.1")
@example("127.1")
def test_canonical_ipv4_check_is_the_dotted_decimal_rule(text):
    assert n._is_canonical_ipv4(text) == bool(_CANONICAL_IPV4.fullmatch(text))


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09 -#é٣\t"), max_size=40)
       | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 \-]{0,40}", fullmatch=True))
@example("-")
@example("1234567890123456789012345678901 2")
def test_postal_code_quick_path_is_the_rule(text):
    rule = re.sub(r"[^A-Za-z0-9 \-]+", "", text.strip())[:32].strip() or None
    assert n.normalize_postal_code(text) == rule

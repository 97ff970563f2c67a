"""Normalizers for user fields (contract section 6): one function per rule, value in, str or None out.

Each returns None when the value is empty or invalid after normalization (the caller leaves the
field out and counts it); none raises on bad input. Normalizing a normalized value changes
nothing (tested with hypothesis), except for phones, whose output drops the '+'
(`normalize_phone("+" + once) == once`).

Speed matters here (every row, every field): ASCII text skips Unicode normalization, values with
few distinct spellings (countries, cities, states) are cached, and clean phone strings take a
fast path that reproduces `phonenumbers.parse` step by step (see `_fast_phone_digits`).
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
import string
import unicodedata
from decimal import Decimal
from typing import Any

import phonenumbers
import pycountry

# phonenumbers' own switch: keep its compiled metadata patterns in a dict instead of asking
# `re.compile` (and its bounded cache) for them a few times per number: 3.9 -> 3.3 us a phone.
if hasattr(phonenumbers, "enable_pattern_cache"):
    phonenumbers.enable_pattern_cache()

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Longer texts are normalized without the caches (so odd data cannot fill memory).
SHORT_TEXT = 256

MAX_CITY_LENGTH = 128
MAX_POSTAL_CODE_LENGTH = 32


def number_text(value: Any) -> str | None:
    """How a number reads as text: 94105 -> '94105', 94105.0 -> '94105', 19.99 -> '19.99';
    NaN, infinities, booleans and non-numbers -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return str(int(value)) if value == value.to_integral_value() else str(value)
    return None


def as_text(value: Any) -> str | None:
    """The text of a scalar source value: 94105 -> '94105', 94105.0 -> '94105'; lists/objects -> None."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float, Decimal)):
        return number_text(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def is_sha256_hex(text: str) -> bool:
    """A value that already is 64 hex characters is taken as a hash (passed through, lower-cased)."""
    return len(text) == 64 and _SHA256_HEX.fullmatch(text) is not None


def _cached(function: Any, text: str, *args: Any) -> str | None:
    if len(text) > SHORT_TEXT:
        return function.__wrapped__(text, *args)
    return function(text, *args)


def _nfc_lower(text: str) -> str:
    """trim, NFC, Unicode lower-case (NFC again: lower-casing can decompose, e.g. 'İ')."""
    text = text.strip()
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower()).strip()


# --- email ------------------------------------------------------------------------------------

def normalize_email(value: Any) -> str | None:
    """trim, NFC, lower-case; exactly one '@' with text on both sides (' Jo@X.com ' -> 'jo@x.com')."""
    text = as_text(value)
    if text is None:
        return None
    text = _nfc_lower(text)
    local, at, domain = text.partition("@")
    if not at or not local or not domain or "@" in domain:
        return None
    return text


# --- names, cities, regions ---------------------------------------------------------------------

_ASCII_NAME_DROP = str.maketrans("", "", string.punctuation + string.whitespace)


def normalize_name(value: Any) -> str | None:
    """The published rule: lower-case, no whitespace, no ASCII punctuation; every non-ASCII
    character is kept ('Mary-Jane' -> 'maryjane', 'D\u2019Angelo' with a typographic apostrophe
    -> 'd\u2019angelo', 'Anne\u2013Marie' with an en dash -> 'anne\u2013marie'); NFC, so a
    decomposed 'Zoe\u0308' hashes like 'Zo\u00eb'. Whitespace is any Unicode whitespace (a
    no-break space copied from a web page is still a space)."""
    text = as_text(value)
    return None if text is None else _cached(_normalize_name_text, text)


@functools.lru_cache(maxsize=65536)
def _normalize_name_text(text: str) -> str | None:
    if text.isascii():
        result = text.lower().translate(_ASCII_NAME_DROP)
    else:
        # str.split() splits on every Unicode whitespace character
        kept = "".join(_nfc_lower(text).translate(_ASCII_NAME_DROP).split())
        # removing a mark's neighbour can leave a composable pair: 'e.\u0301' -> '\u00e9'
        result = unicodedata.normalize("NFC", kept)
    return result or None


def normalize_city(value: Any) -> str | None:
    """trim, NFC, lower-case, at most 128 characters ('San Francisco' -> 'san francisco')."""
    text = as_text(value)
    return None if text is None else _cached(_normalize_city_text, text)


normalize_region = normalize_city


@functools.lru_cache(maxsize=16384)
def _normalize_city_text(text: str) -> str | None:
    result = _nfc_lower(text)[:MAX_CITY_LENGTH].rstrip()
    return result or None


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LM"


def _letters_only(text: str) -> str:
    """lower-case letters only ('San Francisco' -> 'sanfrancisco'), marks kept with their letters."""
    lowered = _nfc_lower(text)
    if lowered.isascii():
        return "".join(ch for ch in lowered if ch.isalpha())
    return unicodedata.normalize("NFC", "".join(ch for ch in lowered if _is_letter(ch)))


def normalize_city_letters(value: Any) -> str | None:
    """Profile `scalar`: lower-case letters only ('San Francisco' -> 'sanfrancisco')."""
    text = as_text(value)
    return None if text is None else _cached(_city_letters_text, text)


@functools.lru_cache(maxsize=16384)
def _city_letters_text(text: str) -> str | None:
    return _letters_only(text) or None


@functools.cache
def _us_states_by_name() -> dict[str, str]:
    """Built on first use: loading pycountry's subdivisions costs ~60 ms, which every process
    importing this module (the launcher too) would otherwise pay."""
    states = {}
    for subdivision in pycountry.subdivisions.get(country_code="US"):
        states[_letters_only(subdivision.name)] = subdivision.code.split("-", 1)[1].lower()
    return states


def normalize_state_letters(value: Any, country: str | None = None) -> str | None:
    """Profile `scalar`: lower-case letters; a US state name -> its code ('New York' -> 'ny').

    The name table applies when the row's country is US or unknown.
    """
    text = as_text(value)
    return None if text is None else _cached(_state_letters_text, text, country in (None, "US"))


@functools.lru_cache(maxsize=16384)
def _state_letters_text(text: str, us: bool) -> str | None:
    letters = _letters_only(text)
    if us:
        letters = _us_states_by_name().get(letters, letters)
    return letters or None


_SHORT_TEXT_CORES = {normalize_name: _normalize_name_text, normalize_city: _normalize_city_text,
                     normalize_city_letters: _city_letters_text}


def for_short_text(normalize: Any) -> Any:
    """`normalize` for str values of at most SHORT_TEXT characters: its cached core where it
    has one (no type check, no length check, ~150 ns less a value), else `normalize` itself.
    UserBuilder.build_columns uses it on columns it knows are such text."""
    return _SHORT_TEXT_CORES.get(normalize, normalize)


# --- postal codes -------------------------------------------------------------------------------

_POSTAL_DROP = re.compile(r"[^A-Za-z0-9 \-]+")
_ZIP_DROP = re.compile(r"[^a-z0-9]+")
_US_ZIP = re.compile(r"\d{5}(?:\d{4})?")


def normalize_postal_code(value: Any) -> str | None:
    """trim, only ASCII letters, digits, spaces and hyphens, at most 32, case kept ('94105-1234')."""
    text = as_text(value)
    if text is None:
        return None
    text = text.strip()
    if text.isascii() and text.replace("-", "").replace(" ", "").isalnum():
        # the common case ('69006', '10033-0413', 'SW1A 1AA'): nothing to drop
        return text[:MAX_POSTAL_CODE_LENGTH].strip() or None
    return _POSTAL_DROP.sub("", text)[:MAX_POSTAL_CODE_LENGTH].strip() or None


def normalize_zip_letters(value: Any, country: str | None = None) -> str | None:
    """Profile `scalar`: lower-case, no spaces or dashes; a US ZIP -> its first 5 digits
    ('94105-1234' -> '94105')."""
    text = as_text(value)
    if text is None:
        return None
    compact = _ZIP_DROP.sub("", text.lower())[:MAX_POSTAL_CODE_LENGTH]
    if country in (None, "US") and _US_ZIP.fullmatch(compact):
        compact = compact[:5]
    return compact or None


# --- countries ----------------------------------------------------------------------------------

def normalize_country(value: Any) -> str | None:
    """ISO 3166-1 alpha-2, upper-case; alpha-3 and English names accepted ('usa' -> 'US')."""
    text = as_text(value)
    if text is None or len(text) > 100:
        return None
    return _country_alpha2(text.strip())


@functools.lru_cache(maxsize=4096)
def _country_alpha2(text: str) -> str | None:
    if not text:
        return None
    if len(text) == 2 and text.isascii():
        country = pycountry.countries.get(alpha_2=text.upper())
    else:
        try:
            country = pycountry.countries.lookup(unicodedata.normalize("NFC", text))
        except LookupError:
            country = None
    return country.alpha_2 if country is not None else None


def normalize_country_lower(value: Any) -> str | None:
    """Profile `scalar`: lower-case alpha-2 ('United States' -> 'us')."""
    code = normalize_country(value)
    return code.lower() if code else None


# --- ids, opaque values, ip, user agent ---------------------------------------------------------

def normalize_external_id(value: Any) -> str | None:
    """trim only, case kept."""
    text = as_text(value)
    if text is None:
        return None
    return text.strip() or None


def normalize_opaque(value: Any) -> str | None:
    """obref: unchanged, non-empty."""
    text = as_text(value)
    return text if text and not text.isspace() else None


normalize_user_agent = normalize_opaque

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def normalize_android_advertising_id(value: Any) -> str | None:
    """The Google Advertising ID: a UUID in lower-case canonical 8-4-4-4-12 form
    ('38400000-8CF0-11BD-B23E-10B96E40000D' -> '38400000-8cf0-11bd-b23e-10b96e40000d').

    The all-zero id (the user limited ad tracking) and anything that is not a UUID written with
    its hyphens are left out; an IDFA is a UUID too and cannot be told apart, so map only
    Android devices' ids here.
    """
    text = as_text(value)
    if text is None:
        return None
    text = text.strip().lower()
    if _UUID.fullmatch(text) is None or text == _ZERO_UUID:
        return None
    return text


def _is_canonical_ipv4(text: str) -> bool:
    """Whether `text` is an IPv4 address as it is written canonically (no leading zeros, each
    octet <= 255): it reads back the same through the C library, ~4x quicker than a regular
    expression (a libc that takes other forms cannot pass the comparison either)."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text
    except (OSError, ValueError):    # not IPv4, or a NUL in the text
        return False


def normalize_ip_address(value: Any) -> str | None:
    """Must parse as IPv4/IPv6; written in canonical form ('2001:DB8::0:1' -> '2001:db8::1')."""
    text = as_text(value)
    if text is None:
        return None
    text = text.strip()
    if _is_canonical_ipv4(text):
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        # RFC 5952 section 5: '::ffff:192.0.2.1', as Python 3.13+ prints it; 3.10-3.12 print
        # '::ffff:c000:201'. Written out so every worker sends the same text.
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


# --- phone numbers ------------------------------------------------------------------------------

# The published rule: the hashed value is the country calling code and the number, 8-15 digits.
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 8, 15


def normalize_phone(value: Any, region: str | None = None) -> str | None:
    """E.164 digits without '+', 8-15 of them: '+1 (415) 555-0100' -> '14155550100';
    '020 7946 0018' in GB -> '442079460018'; '0044 20 7946 0958' -> '442079460958'.

    `region` (ISO alpha-2) is used for numbers without an international prefix; without it such
    numbers are left out, as are numbers that are not possible numbers and results outside
    8-15 digits ('+683 4002', Niue, is 7: left out). A leading '00' is the international prefix
    of most of the world and is read as '+' wherever the region's own prefix does not match it
    (the published rule strips leading zeros), so '0044 ...' means +44 with no region or in US.
    """
    text = as_text(value)
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    if text.startswith("00"):
        text = _international_zeros(text, region)
    digits = _phone_digits(text, region)
    if digits is None or not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
        return None
    return digits


def _international_zeros(text: str, region: str | None) -> str:
    """A text starting '00': '0044 20 7946 0958' -> '+44 20 7946 0958' unless `region` dials out
    with a prefix that matches it (AU's '0011 44 ...' is left to phonenumbers, which knows AU's
    prefixes)."""
    idd = _international_prefix(region) if region else None
    if idd is not None and idd.match(text.translate(_PHONE_SEPARATORS)):
        return text
    return "+" + text[2:]


@functools.cache
def _international_prefix(region: str) -> re.Pattern | None:
    """The compiled pattern of the prefix `region` dials abroad with ('00', US '011')."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper(), None)
    prefix = metadata.international_prefix if metadata is not None else None
    return re.compile(prefix) if prefix else None


def _phone_digits(text: str, region: str | None) -> str | None:
    """E.164 digits by the fast path when it applies, else by phonenumbers (the reference)."""
    if _FAST_PHONE_AVAILABLE and _CLEAN_PHONE.fullmatch(text):
        # ASCII by the match; bytes.translate deletes in C, str.translate looks up each character
        digits = text.encode("ascii").translate(None, _PHONE_SEPARATOR_BYTES).decode("ascii")
        plus = digits.startswith("+")
        result = _fast_phone_digits(digits[1:] if plus else digits, plus, region)
        if result is not _SLOW:
            return result
    return _phonenumbers_digits(text, region)


def _phonenumbers_digits(text: str, region: str | None) -> str | None:
    """The reference: phonenumbers.parse + is_possible_number + E.164."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if _zero_padded(number) or not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def _zero_padded(number: phonenumbers.PhoneNumber) -> bool:
    """'0000001' in DE parses as +49 1 with five leading zeros: no one's number, and its E.164
    digits read back differently. Real numbers keep at most one leading zero (Italy's +39 06...)."""
    return number.national_number == 0 or (number.number_of_leading_zeros or 1) > 1


# Fast path. Only for strings of ASCII digits and the separators ' ().-' with an optional leading
# '+': for these, phonenumbers' generic pre-processing (possible-number extraction, extension
# stripping, Unicode digit folding, which cost ~15 us) cannot change anything, so we start where
# `phonenumbers.parse` has the bare digits and run the same steps with its own helpers. Anything
# unusual (an IDD prefix, an unknown country code, edge lengths) returns _SLOW and goes the
# reference way. tests/transforms/test_normalize.py checks equality on thousands of numbers.
_CLEAN_PHONE = re.compile(r"\+?[0-9 ().\-]+")
_PHONE_SEPARATOR_CHARS = " ().-"
_PHONE_SEPARATORS = str.maketrans("", "", _PHONE_SEPARATOR_CHARS)
_PHONE_SEPARATOR_BYTES = _PHONE_SEPARATOR_CHARS.encode("ascii")
_SLOW = object()

try:
    from phonenumbers import phonenumberutil as _pnu

    _extract_country_code = _pnu._extract_country_code
    _strip_national_prefix = _pnu._maybe_strip_national_prefix_carrier_code
    _test_number_length = _pnu._test_number_length
    _match_national_number = _pnu._match_national_number
    _PhoneMetadata = _pnu.PhoneMetadata
    _VR = _pnu.ValidationResult
    _KEEP_UNSTRIPPED = (_VR.TOO_SHORT, _VR.IS_POSSIBLE_LOCAL_ONLY, _VR.INVALID_LENGTH)
    _POSSIBLE = (_VR.IS_POSSIBLE, _VR.IS_POSSIBLE_LOCAL_ONLY)
    _MIN_NSN, _MAX_NSN = _pnu._MIN_LENGTH_FOR_NSN, _pnu._MAX_LENGTH_FOR_NSN
    _MAX_CODE_LENGTH = _pnu._MAX_LENGTH_COUNTRY_CODE
    _FAST_PHONE_AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - a phonenumbers without these helpers
    _FAST_PHONE_AVAILABLE = False


@functools.cache
def _metadata_for_calling_code(country_code: int):
    region = phonenumbers.region_code_for_country_code(country_code)
    return _PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)


@functools.cache
def _region_plan(region: str):
    """(metadata, compiled IDD pattern or None) for a supported region, else None."""
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    metadata = _PhoneMetadata.metadata_for_region(region, None)
    if metadata is None:
        return None
    idd = metadata.international_prefix
    return metadata, (re.compile(idd) if idd else None)


_length_results: dict[tuple[int, int], tuple[Any, Any]] = {}


def _length_result(number: str, metadata: Any) -> Any:
    """phonenumbers' _test_number_length (type UNKNOWN), which reads only the number's length:
    one result per (metadata, length). The metadata is kept with it, so its id stays its own."""
    key = (id(metadata), len(number))
    known = _length_results.get(key)
    if known is None:
        known = _length_results[key] = (metadata, _test_number_length(number, metadata))
    return known[1]


@functools.cache
def _country_code_at(head: str) -> tuple[int, int]:
    """(calling code, its length) at the start of digits that begin with `head`, their first
    _MAX_CODE_LENGTH digits: _extract_country_code reads no further. (0, 0): none."""
    country_code, rest = _extract_country_code(head)
    return (country_code, len(head) - len(rest)) if country_code else (0, 0)


_national_prefixes: dict[int, tuple[Any, re.Pattern | None]] = {}


def _strip_national(number: str, metadata: Any) -> str:
    """The number _maybe_strip_national_prefix_carrier_code leaves. Most numbers do not start
    with the region's national prefix, and that case is answered here with the pattern compiled
    once per metadata (kept with it, so its id stays its own)."""
    known = _national_prefixes.get(id(metadata))
    if known is None:
        prefix = metadata.national_prefix_for_parsing
        known = _national_prefixes[id(metadata)] = (metadata, re.compile(prefix) if prefix else None)
    pattern = known[1]
    if pattern is None or not number or pattern.match(number) is None:
        return number
    return _strip_national_prefix(number, metadata)[1]


def _fast_phone_digits(digits: str, plus: bool, region: str | None) -> Any:
    """E.164 digits, None (not a possible number), or _SLOW (let phonenumbers decide)."""
    if not 3 <= len(digits) <= _MAX_NSN:
        return _SLOW
    if plus:
        if digits[0] == "0":
            return _SLOW
        country_code, code_length = _country_code_at(digits[:_MAX_CODE_LENGTH])
        national = digits[code_length:]
        if country_code == 0:
            return _SLOW
        metadata = _metadata_for_calling_code(country_code)
    else:
        plan = _region_plan(region) if region else None
        if plan is None:
            return None if region is None else _SLOW
        metadata, idd = plan
        dialled = idd.match(digits) if idd is not None else None
        if dialled:   # the region's international prefix (00 44 ..., AU 0011 44 ...): as '+'
            rest = digits[dialled.end():]   # (a rest starting with 0 goes the reference way)
            return _fast_phone_digits(rest, True, None) if rest else _SLOW
        country_code = metadata.country_code
        national = digits
        # phonenumbers' _maybe_extract_country_code: a national number may start with the
        # region's own calling code ('44 20 7946 0018' in GB).
        code_text = str(country_code)
        if digits.startswith(code_text):
            general = metadata.general_desc
            potential = _strip_national(digits[len(code_text):], metadata)
            if ((not _match_national_number(digits, general, False)
                 and _match_national_number(potential, general, False))
                    or _length_result(digits, metadata) == _VR.TOO_LONG):
                national = potential
                # parse() then switches to the calling code's main region ('1...' in CA -> US)
                metadata = _metadata_for_calling_code(country_code)
    if len(national) < _MIN_NSN:
        return _SLOW
    potential = _strip_national(national, metadata)
    if _length_result(potential, metadata) not in _KEEP_UNSTRIPPED:
        national = potential
    if not _MIN_NSN <= len(national) <= _MAX_NSN or national.startswith("00") \
            or not national.strip("0"):
        return _SLOW    # zero-padded (JP '00 1 809...'): the reference leaves it out (_zero_padded)
    if _length_result(national, _metadata_for_calling_code(country_code)) not in _POSSIBLE:
        return None
    return f"{country_code}{national}"

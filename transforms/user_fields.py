"""The `user` object: normalize, hash and shape user fields by a table (contract section 6).

The wire shape is data, not code: each profile is a tuple of WireField rows (logical field ->
wire key, list or scalar, normalization, hashed). A change on OpenAI's side is a table change.

    logical      openai key             shape   normalization   hashed
    email        emails_sha256          list    email           yes
    phone        phone_numbers_sha256   list    phone           yes
    ...          (see OPENAI_PROFILE / SCALAR_PROFILE below)

Rules shared by every row: a hashed field whose value already is 64 hex characters is taken as
a hash (lower-cased, never hashed twice); a value that normalizes to nothing is left out and
counted as `user.<logical>.invalid`; list-valued sources are normalized element by element,
empty and duplicate results dropped, and list fields keep the first 3 (the rest is counted as
`user.<logical>.over_limit`); `user` is omitted when nothing is left.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

from transforms import normalize as n
from transforms.paths import ValueSource

MAX_LIST_VALUES = 3

LOGICAL_FIELDS = ("email", "phone", "external_id", "first_name", "last_name", "country", "city",
                  "region", "postal_code", "obref", "android_advertising_id", "ip_address",
                  "user_agent")


@dataclasses.dataclass(frozen=True)
class WireField:
    """One row of a profile table."""

    logical: str        # the mapping's name for the field (user.fields.<logical>)
    key: str            # the key in the wire `user` object
    is_list: bool       # list of up to 3 values, or one scalar
    normalization: str  # a key of NORMALIZATIONS
    hashed: bool        # SHA-256 hex of the normalized value


OPENAI_PROFILE = (
    WireField("email", "emails_sha256", True, "email", True),
    WireField("phone", "phone_numbers_sha256", True, "phone", True),
    WireField("external_id", "external_ids_sha256", True, "external_id", True),
    WireField("first_name", "first_names_sha256", True, "name", True),
    WireField("last_name", "last_names_sha256", True, "name", True),
    WireField("country", "countries", True, "country", False),
    WireField("city", "cities", True, "city", False),
    WireField("region", "regions", True, "city", False),
    WireField("postal_code", "postal_codes", True, "postal_code", False),
    WireField("obref", "obref", False, "opaque", False),
    WireField("android_advertising_id", "android_advertising_id", False,
              "android_advertising_id", False),
    WireField("ip_address", "ip_address", False, "ip_address", False),
    WireField("user_agent", "user_agent", False, "opaque", False),
)

# Seed 001's destination ("scalar" user object); it has no obref and no android_advertising_id:
# a mapping that maps them with this profile sends neither.
SCALAR_PROFILE = (
    WireField("email", "email_sha256", False, "email", True),
    WireField("phone", "phone_number_sha256", False, "phone", True),
    WireField("external_id", "external_id_sha256", False, "external_id", True),
    WireField("external_id", "external_id", False, "external_id", False),
    WireField("first_name", "first_name_sha256", False, "name", True),
    WireField("last_name", "last_name_sha256", False, "name", True),
    WireField("country", "country_sha256", False, "country_lower", True),
    WireField("city", "city_sha256", False, "letters", True),
    WireField("region", "state_sha256", False, "us_state_letters", True),
    WireField("postal_code", "zip_code_sha256", False, "zip_letters", True),
    WireField("ip_address", "ip_address", False, "ip_address", False),
    WireField("user_agent", "user_agent", False, "opaque", False),
)

PROFILES = {"openai": OPENAI_PROFILE, "scalar": SCALAR_PROFILE}
DEFAULT_PROFILE = "openai"


# Normalizations by name. Most take the value only; those in NEEDS_ROW_CONTEXT also take the
# row's country (alpha-2 or None) and the phone region (the country, else the default region).
def _phone(value: Any, country: str | None, region: str | None) -> str | None:
    return n.normalize_phone(value, region)


def _us_state_letters(value: Any, country: str | None, region: str | None) -> str | None:
    return n.normalize_state_letters(value, country)


def _zip_letters(value: Any, country: str | None, region: str | None) -> str | None:
    return n.normalize_zip_letters(value, country)


NORMALIZATIONS: dict[str, Callable[..., str | None]] = {
    "email": n.normalize_email, "phone": _phone, "external_id": n.normalize_external_id,
    "name": n.normalize_name, "country": n.normalize_country,
    "country_lower": n.normalize_country_lower, "city": n.normalize_city,
    "postal_code": n.normalize_postal_code, "letters": n.normalize_city_letters,
    "us_state_letters": _us_state_letters, "zip_letters": _zip_letters,
    "opaque": n.normalize_opaque, "ip_address": n.normalize_ip_address,
    "android_advertising_id": n.normalize_android_advertising_id,
}
NEEDS_ROW_CONTEXT = frozenset({"phone", "us_state_letters", "zip_letters"})


def _with_context(normalize: Callable[[Any], str | None]) -> Callable[..., str | None]:
    return lambda value, country, region: normalize(value)


_sha256 = hashlib.sha256
NOT_BUILT = object()   # build_columns: this row needs build()
TEXT_OR_NONE = frozenset({str, type(None)})   # a column of these has nothing for build()


class BuiltUser(NamedTuple):
    """build_columns' result for one row: the user object and the counters build() bumps."""

    user: dict[str, Any] | None
    counts: tuple[str, ...] | list[str]


_new_built_user = functools.partial(tuple.__new__, BuiltUser)   # no Python frame per row


@dataclasses.dataclass(frozen=True)
class _WireStep:
    """How one wire key is made from one logical field's text (a profile row, resolved)."""

    key: str
    is_list: bool
    normalize: Callable[..., str | None]
    hashed: bool
    counts: bool         # the first wire key of a field counts its invalid/over-limit values
    contextual: bool     # normalize takes (value, country, region)

    def value(self, raw: Any, country: str | None, region: str | None) -> str | None:
        """The wire value of one source value, or None when it normalizes to nothing."""
        if self.hashed and is_prehashed(raw):
            return raw.strip().lower()      # already a hash: passed through, never hashed twice
        value = self.normalize(raw, country, region) if self.contextual else self.normalize(raw)
        if value is None or not self.hashed:
            return value
        return _sha256(value.encode("utf-8")).hexdigest()


def is_prehashed(value: Any) -> bool:
    """The one 'already a hash' rule: text of 64 hex characters (after stripping)."""
    return type(value) is str and len(value) >= 64 and n.is_sha256_hex(value.strip())


def sha256_hex(text: str) -> str:
    return _sha256(text.encode("utf-8")).hexdigest()


# Names repeat (their normalization is cached for that reason, normalize.for_short_text), so
# their hashes are too: a hit costs a dict look-up instead of a SHA-256 (~10x less).
_repeated_sha256_hex = functools.lru_cache(maxsize=65536)(sha256_hex)


class UserBuilder:
    """Builds the wire `user` object of one row from the mapping's user field sources.

    Picklable (it pickles its constructor arguments); the per-field steps are resolved once.
    """

    def __init__(self, profile: str, sources: tuple[tuple[str, ValueSource], ...],
                 default_phone_region: str | None = None):
        self.profile = profile
        self.sources = tuple(sources)
        self.default_phone_region = default_phone_region
        by_logical = dict(self.sources)
        self._country_source = by_logical.get("country")
        steps = []
        for logical, source in self.sources:
            wires = []
            first = True
            for wire in PROFILES[profile]:
                if wire.logical != logical:
                    continue
                wires.append(_WireStep(wire.key, wire.is_list, NORMALIZATIONS[wire.normalization],
                                       wire.hashed, first,
                                       wire.normalization in NEEDS_ROW_CONTEXT))
                first = False
            if wires:
                steps.append((source, f"user.{logical}.invalid", f"user.{logical}.over_limit",
                              tuple(wires)))
        self._steps = tuple(steps)

    def __reduce__(self):
        return (UserBuilder, (self.profile, self.sources, self.default_phone_region))

    def row_country(self, row: Any) -> str | None:
        """The row's country as alpha-2: phone region and the scalar profile's US rules use it."""
        if self._country_source is None:
            return None
        raw = self._country_source.get(row)
        for value in (raw if isinstance(raw, (list, tuple)) else (raw,)):
            code = n.normalize_country(value)
            if code is not None:
                return code
        return None

    def build(self, row: Any, counters: Any) -> dict[str, Any] | None:
        country = self.row_country(row)
        region = country or self.default_phone_region
        user: dict[str, Any] = {}
        for source, invalid_key, over_limit_key, wires in self._steps:
            raw = source.get(row, counters)
            if raw is None:
                continue
            if type(raw) is str:  # the common case: one text value
                for wire in wires:
                    value = wire.value(raw, country, region)
                    if value is None:
                        if wire.counts:
                            counters[invalid_key] += 1
                        continue
                    user[wire.key] = [value] if wire.is_list else value
                continue
            values = raw if isinstance(raw, (list, tuple)) else (raw,)
            for wire in wires:
                out = self._normalize_all(values, wire, country, region,
                                          counters if wire.counts else None, invalid_key)
                if not out:
                    continue
                if wire.is_list:
                    if len(out) > MAX_LIST_VALUES:
                        if wire.counts:
                            counters[over_limit_key] += len(out) - MAX_LIST_VALUES
                        out = out[:MAX_LIST_VALUES]
                    user[wire.key] = out
                else:
                    if len(out) > 1 and wire.counts:
                        counters[over_limit_key] += len(out) - 1
                    user[wire.key] = out[0]
        return user or None

    def build_columns(self, column_of: Callable[[ValueSource], list[Any]], rows: int
                      ) -> list[Any]:
        """`build` for `rows` rows at once, field by field (the columnar mapper's fast path).

        `column_of(source)` gives what `source.get(row)` gives, for every row. Returns, per row,
        (user object or None, the counter keys build() would bump), or NOT_BUILT where a value
        is not text (a list, a number): those rows go through `build`.
        """
        not_built = [False] * rows
        country: list[str | None] = [None] * rows
        if self._country_source is not None:
            normalize_country = n.normalize_country
            for i, raw in enumerate(column_of(self._country_source)):
                if type(raw) is str:
                    country[i] = normalize_country(raw)
                elif raw is not None:
                    not_built[i] = True
        default_region = self.default_phone_region
        region = [code or default_region for code in country] if default_region else country
        counts: list[list[str] | None] = [None] * rows
        keys: list[str] = []           # the wire keys, in build()'s order
        columns: list[list[Any]] = []  # per key, every row's wire value or None
        for source, invalid_key, _, wires in self._steps:
            column = column_of(source)
            if TEXT_OR_NONE.issuperset(map(type, column)):  # the common case: text or nothing
                texts = [i for i, raw in enumerate(column) if raw is not None]
            else:
                texts = []
                for i, raw in enumerate(column):
                    if type(raw) is str:
                        texts.append(i)
                    elif raw is not None:
                        not_built[i] = True
            if not texts:
                continue
            every_row = len(texts) == rows
            values = column if every_row else [column[i] for i in texts]
            longest = max(map(len, values))
            for wire in wires:   # wire.value, field by field (pinned by a property test)
                key, is_list, normalize, hashed = wire.key, wire.is_list, wire.normalize, wire.hashed
                repeats = False   # values of this field repeat across rows (names)
                if wire.contextual:
                    out = [normalize(value, country[i], region[i])
                           for value, i in zip(values, texts, strict=True)]
                elif longest <= n.SHORT_TEXT:
                    short_text = n.for_short_text(normalize)
                    repeats = short_text is not normalize
                    out = list(map(short_text, values))
                else:
                    out = list(map(normalize, values))
                if hashed:
                    out = ([None if text is None else _repeated_sha256_hex(text) for text in out]
                           if repeats else
                           [None if text is None else _sha256(text.encode("utf-8")).hexdigest()
                            for text in out])
                    if longest >= 64:
                        for position, value in enumerate(values):   # already a hash: kept
                            if is_prehashed(value):
                                out[position] = value.strip().lower()
                if None in out and wire.counts:
                    for position, value in enumerate(out):
                        if value is None:
                            i = texts[position]
                            if counts[i] is None:
                                counts[i] = []
                            counts[i].append(invalid_key)
                if is_list:
                    out = [None if value is None else [value] for value in out]
                if not every_row:
                    spread: list[Any] = [None] * rows
                    for i, value in zip(texts, out, strict=True):
                        spread[i] = value
                    out = spread
                keys.append(key)
                columns.append(out)
        # One dict per row, built in C when the row has every field (the common case).
        users: list[dict[str, Any] | None] = [
            {key: value for key, value in zip(keys, row, strict=True) if value is not None}
            if None in row else dict(zip(keys, row, strict=True))
            for row in zip(*columns, strict=True)] if columns else [None] * rows
        return [NOT_BUILT if not_built[i] else _new_built_user((users[i] or None, counts[i] or ()))
                for i in range(rows)]

    @staticmethod
    def _normalize_all(values: Any, wire: _WireStep, country: str | None, region: str | None,
                       counters: Any, invalid_key: str) -> list[str]:
        """Each value's wire value; empty and duplicate results dropped, order kept."""
        out: list[str] = []
        for value in values:
            if value is None:
                continue
            result = wire.value(value, country, region)
            if result is None:
                if counters is not None:
                    counters[invalid_key] += 1
                continue
            if result not in out:
                out.append(result)
        return out


def profile_table(profile: str) -> list[dict[str, Any]]:
    """The profile as plain rows (for docs and `--print-default-mapping` style output)."""
    return [dataclasses.asdict(wire) for wire in PROFILES[profile]]

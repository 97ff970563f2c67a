import pickle
import re

import pytest
import yaml

from transforms.errors import MappingFileError
from transforms.mapping import (
    DEFAULT_MAPPING_NAME,
    MappingPlan,
    builtin_event_names,
    default_mapping_text,
    load_mapping,
    parse_mapping,
)
from transforms.mapping_schema import check_schema


def mapping_error(text: str, name: str = "shop.yaml") -> str:
    with pytest.raises(MappingFileError) as caught:
        parse_mapping(text, name)
    return str(caught.value)


def test_default_mapping_loads_and_is_the_packaged_text():
    plan = load_mapping()
    assert isinstance(plan, MappingPlan)
    assert yaml.safe_load(default_mapping_text())["event"]["id"] == "context.event_id"
    assert plan.id.refs[0].text == "context.event_id"
    assert plan.user_profile == "openai"
    assert plan.contents.path.text == "items"


def test_default_mapping_passes_the_schema():
    # load_mapping() skips the schema check for the packaged default: this test is that check.
    check_schema(yaml.safe_load(default_mapping_text()), "default mapping")
    assert pickle.dumps(parse_mapping(default_mapping_text(), DEFAULT_MAPPING_NAME)) == \
        pickle.dumps(load_mapping())


def test_default_mapping_required_columns():
    columns = load_mapping().required_columns
    for column in ("context", "event_name", "type", "user", "partners", "value", "currency",
                   "items", "content_type", "user.email", "context.device.ip"):
        assert column in columns
    assert "items.X.id" not in columns and "product" not in columns


def test_plan_pickles():
    plan = load_mapping()
    assert pickle.loads(pickle.dumps(plan)) == plan


@pytest.mark.parametrize("name, expected", [
    ("purchase", "order_created"), ("PURCHASE", "order_created"), (" Page_View ", "page_viewed"),
    ("sign_up", "registration_completed"), ("app_open", "app_opened"),
    ("newsletter_signup", "custom"),
])
def test_builtin_event_table_is_case_insensitive(name, expected):
    assert load_mapping().event_type_for(name) == expected


def test_builtin_event_table_matches_contract():
    table = builtin_event_names()
    assert table["order_completed"] == "order_created"
    assert table["begin_checkout"] == "checkout_started"
    assert table["generate_lead"] == "lead_created"
    assert table["start_trial"] == "trial_started"
    assert len(table) == 26


def test_event_table_extends_and_overrides_by_default():
    plan = parse_mapping("""
extends: default
event_names:
  types:
    order_created: [checkout_complete]
    custom: [purchase]
""")
    assert plan.event_type_for("checkout_complete") == "order_created"
    assert plan.event_type_for("purchase") == "custom"            # re-pointed
    assert plan.event_type_for("add_to_cart") == "items_added"     # the rest stays


def test_re_pointing_a_built_in_name_is_not_a_duplicate():
    plan = parse_mapping("extends: default\nevent_names:\n  types:\n    custom: [add_to_cart]\n")
    assert plan.event_type_for("add_to_cart") == "custom"
    assert plan.event_type_for("items_added") == "items_added"


def test_event_table_replace():
    plan = parse_mapping("""
extends: default
event_names:
  replace: true
  types:
    order_created: [sale]
""")
    assert plan.event_type_for("sale") == "order_created"
    assert plan.event_type_for("purchase") == "custom"


def test_extends_default_overrides_fields_and_null_removes_them():
    plan = parse_mapping("""
extends: default
event:
  action_source: {constant: offline}
  source_url: null
user:
  profile: scalar
  fields:
    email: [user.email, user.emails.X]
""")
    assert plan.action_source.constant == "offline"
    assert plan.source_url is None
    assert plan.user_profile == "scalar"
    assert dict(plan.user_fields)["email"].paths[1].text == "user.emails.X"
    assert dict(plan.user_fields)["phone"].paths[0].text == "user.phone"   # kept from default


def test_standalone_file_reads_only_what_it_declares():
    plan = parse_mapping("""
event:
  id: order_{order_id}
  type: {constant: purchase}
""")
    assert plan.required_columns == ("order_id",)
    assert plan.action_source.default == "web"       # contract: missing -> web
    assert plan.user_fields == () and plan.contents is None


def test_user_disabled_reads_no_user_columns():
    plan = parse_mapping("extends: default\nuser: {enabled: false}\n")
    assert plan.user_fields == ()
    assert "user" not in plan.required_columns


def test_consent_and_pixel_id():
    plan = parse_mapping("""
extends: default
consent: {path: consent.ads, granted: [true, Granted]}
pixel_id: partners.openai.pixel_id
""")
    assert plan.consent.granted == (True, "granted")
    assert plan.consent.is_granted({"consent": {"ads": "GRANTED"}})
    assert not plan.consent.is_granted({"consent": {"ads": "denied"}})
    assert not plan.consent.is_granted({})
    assert plan.pixel_id.paths[0].text == "partners.openai.pixel_id"


# --- each kind of mistake: its message names the file, the key path and the fix -----------------

@pytest.mark.parametrize("text, where, what, fix", [
    # unknown keys / unknown CAPI fields (with a suggestion)
    ("extends: default\nevnt: {}\n", "evnt", "unknown key 'evnt'", "did you mean 'event'?"),
    ("extends: default\nevent:\n  idd: x\n", "event.idd", "unknown key 'idd'", "did you mean 'id'?"),
    ("extends: default\nuser:\n  fields:\n    mail: email\n", "user.fields.mail",
     "unknown key 'mail'", "allowed keys here: android_advertising_id, city, country, email"),
    ("extends: default\ndata:\n  contents:\n    path: items\n    fields:\n      sku: items.X.id\n",
     "data.contents.fields.sku", "unknown key 'sku'", "allowed keys here: amount, content_type"),
    # unknown event type
    ("extends: default\nevent_names:\n  types:\n    order_creatd: [purchase]\n",
     "event_names.types.order_creatd", "unknown key 'order_creatd'",
     "did you mean 'order_created'?"),
    # wrong types
    ("extends: default\nuser:\n  enabled: 'yes'\n", "user.enabled",
     "expected boolean, found text", "true or false"),
    ("extends: default\nevent:\n  id: 5\n", "event.id", "expected text or list or mapping",
     "write a path (user.email)"),
    ("extends: default\ndata:\n  currency: {constant: NO}\n", "data.currency.constant",
     "expected text, found true/false", "quote text that YAML reads as something else"),
    ("extends: default\nevent:\n  opt_out: {constant: 'yes'}\n", "event.opt_out.constant",
     "expected boolean, found text", "write a true/false value"),
    # enums: units, profiles, action sources
    ("extends: default\ndata:\n  amount: {path: value, unit: cents}\n", "data.amount.unit",
     "'cents' is not allowed here", "use one of: major, minor"),
    ("extends: default\nevent:\n  timestamp_ms: {path: t, unit: minutes}\n",
     "event.timestamp_ms.unit", "'minutes' is not allowed here", "use one of: ms, s, us, ns, iso"),
    ("extends: default\nevent:\n  oppref: {path: x, unit: ms}\n", "event.oppref.unit",
     "unknown key 'unit'", "allowed keys here: constant, default, path"),
    ("extends: default\nuser:\n  profile: legacy\n", "user.profile", "'legacy' is not allowed",
     "use one of: openai, scalar"),
    ("extends: default\nevent:\n  action_source: {constant: webb}\n",
     "event.action_source.constant", "'webb' is not allowed", "use one of: email, mobile_app"),
    # field objects
    ("extends: default\nevent:\n  oppref: {path: a, constant: b}\n", "event.oppref",
     "exactly one of 'path' or 'constant'", "{path: some.column} or {constant: value}"),
    # templates and paths
    ("extends: default\nevent:\n  id: order_{order_id\n", "event.id", "never closed",
     "see 'Paths' in docs/mapping.md"),
    ("extends: default\nevent:\n  id: order_{}\n", "event.id", "empty or nested placeholder",
     "docs/mapping.md"),
    ("extends: default\nevent:\n  source_url: context..page.url\n", "event.source_url",
     "empty segment", "docs/mapping.md"),
    ("extends: default\nevent:\n  id: items.X.id\n", "event.id", "uses 'X'",
     "use X only in user fields and data.contents.fields"),
    ("extends: default\ndata:\n  contents:\n    path: items\n    fields:\n      id: lines.X.id\n",
     "data.contents.fields.id", "does not read each item as items.X.<field>",
     "item fields read items.X.<field>"),
    # semantic rules
    ("extends: default\nevent:\n  id: {constant: abc}\n", "event.id", "is a constant",
     "order_{order_id}"),
    ("extends: default\ndata:\n  currency: {constant: XYZ}\n", "data.currency.constant",
     "'XYZ' is not an ISO 4217 currency code", "USD, EUR or JPY"),
    ("extends: default\nuser:\n  default_phone_region: ZZ\n", "user.default_phone_region",
     "'ZZ' is not a region", "ISO 3166-1 alpha-2"),
    ("extends: default\nevent_names:\n  types:\n    order_created: [buy]\n    items_added: [Buy]\n",
     "event_names.types.items_added[0]", "also listed under order_created",
     "under one type only"),
    ("extends: default\nevent:\n  custom_event_name: {constant: My Event}\n",
     "event.custom_event_name.constant", "1-64 letters, digits", "newsletter_signup"),
    ("extends: default\nevent:\n  custom_event_name: {constant: promo_}\n",
     "event.custom_event_name.constant", "ending with a letter or a digit", "newsletter_signup"),
    ("extends: default\nevent:\n  custom_event_name: {constant: Order_Created}\n",
     "event.custom_event_name.constant", "must not reuse the standard event name 'order_created'",
     "newsletter_signup"),
    ("extends: default\nevent:\n  source_url: {path: u, default: /thanks}\n",
     "event.source_url.default", "is not an absolute URL with a scheme and a host",
     "https://shop.example.com/checkout"),
    ("extends: default\nevent:\n  source_url: {constant: shop.example.com/p}\n",
     "event.source_url.constant", "is not an absolute URL", "https://shop.example.com/checkout"),
    ("extends: default\nevent:\n  source_url: {path: u, keep_query: yes please}\n",
     "event.source_url.keep_query", "expected boolean, found text", "keeps the query string"),
    ("extends: default\ndata:\n  custom:\n    amount: x\n", "data.custom", "'amount' is reserved",
     "not type, amount"),
    ("extends: default\nevent:\n  timestamp_ms: {path: t, default: soon}\n",
     "event.timestamp_ms.default", "cannot be read as a timestamp", "ISO-8601"),
    # required in a file that does not extend the default
    ("data:\n  currency: currency\n", "event", "is required but missing", "extends: default"),
    ("event:\n  type: event_name\n", "event.id", "is required but missing", "order_{order_id}"),
])
def test_mapping_file_errors(text, where, what, fix):
    message = mapping_error(text)
    assert "'shop.yaml'" in message
    assert f"{where}: " in message
    assert what in message
    assert "Fix: " in message and fix in message


@pytest.mark.parametrize("text, what", [
    ("event:\n  id: [a\n", "is not valid YAML at line 3"),
    ("extends: default\nevent:\n  id: a\n  id: b\n", "duplicate key 'id'"),
    ("", "is empty"),
    ("- a\n", "the top level must be a mapping"),
])
def test_yaml_level_errors(text, what):
    message = mapping_error(text)
    assert "'shop.yaml'" in message and what in message and "Fix: " in message


def test_every_problem_is_reported_at_once():
    message = mapping_error("extends: default\nevent:\n  idd: x\n  tipe: y\n")
    assert "has 2 problems" in message
    assert "event.idd" in message and "event.tipe" in message


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(MappingFileError) as raised:
        load_mapping(path)
    assert str(raised.value) == (
        f"Mapping file {path!r} does not exist. Fix: pass the path of a YAML mapping file or a "
        f"preset (ga4, segment, rudderstack, snowplow, shopify) to --mapping, or leave --mapping "
        f"out to use the default mapping")


@pytest.mark.parametrize("name, preset", [("ga-4", "ga4"), ("GA4", "ga4"),
                                          ("shopfy", "shopify"), ("snowplough", "snowplow")])
def test_a_misspelt_preset_name_is_answered_with_the_preset(name, preset):
    with pytest.raises(MappingFileError, match=re.escape(
            f"Mapping file {name!r} does not exist. Fix: did you mean the preset {preset!r}? "
            f"pass the path")):
        load_mapping(name)


def test_load_mapping_from_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("event:\n  id: order_id\n  type: {constant: purchase}\n", encoding="utf-8")
    assert load_mapping(str(path)).name == str(path)
    path.write_text("event:\n  id: order_id\n", encoding="utf-8")
    with pytest.raises(MappingFileError, match=f"'{path}': event.type: is required"):
        load_mapping(str(path))


def _doc_mappings() -> list[str]:
    """The complete mapping examples in docs/mapping.md (blocks with `event:` or `extends:`)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[2] / "docs" / "mapping.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    return [block for block in blocks if re.search(r"^(event|extends):", block, flags=re.M)]


def test_documented_examples_are_valid_mappings():
    examples = _doc_mappings()
    assert len(examples) >= 2
    for example in examples:
        parse_mapping(example, "docs/mapping.md")


# --- presets -------------------------------------------------------------------------------------

PRESETS = ("ga4", "segment", "rudderstack", "snowplow", "shopify")


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_passes_the_schema_and_is_its_own_base(name):
    from transforms.mapping import base_plan, preset_text
    from transforms.mapping_schema import check_schema
    check_schema(yaml.safe_load(preset_text(name)), name)
    plan = load_mapping(name)
    assert plan.base == name and base_plan(plan) is plan
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_a_file_named_like_a_preset_wins_over_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ga4").write_text("extends: default\nevent:\n  id: my_id\n")
    assert load_mapping("ga4").id.refs[0].text == "my_id"


def test_extends_a_preset_changes_only_what_it_lists():
    from transforms.mapping import base_plan
    plan = parse_mapping("extends: ga4\nconsent: null\nuser:\n  fields:\n    email: user_email\n",
                         "mine.yaml")
    ga4 = load_mapping("ga4")
    assert plan.consent is None and ga4.consent is not None
    assert plan.id == ga4.id and plan.filters == ga4.filters
    assert dict(plan.user_fields)["email"].refs[0].text == "user_email"
    assert dict(plan.user_fields)["country"] == dict(ga4.user_fields)["country"]
    assert base_plan(plan) is ga4


def test_an_unknown_preset_name_in_extends_names_the_presets():
    with pytest.raises(MappingFileError, match="extends: 'mixpanel' is not allowed here"):
        parse_mapping("extends: mixpanel\n", "mine.yaml")


def test_source_paths_lists_every_row_path_once_and_required_columns_follow_it():
    plan = parse_mapping(
        "event:\n  id: order_{o.id}\n  type: t | o.type\n  timestamp_ms: {path: ts, unit: us}\n"
        "filter:\n  - {path: status, in: [paid]}\ngroup_by: o.id\n"
        "data:\n  contents:\n    path: lines\n    fields: {id: lines.X.sku, content_type: kind}\n"
        "user:\n  enabled: false\n  fields:\n    email: email\n", "p.yaml")
    assert [path.text for path in plan.source_paths()] == [
        "o.id", "t", "o.type", "ts", "lines", "kind", "status"]
    assert plan.required_columns == ("o", "o.id", "t", "o.type", "ts", "lines", "kind", "status")

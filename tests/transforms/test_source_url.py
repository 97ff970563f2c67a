import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.source_url import is_absolute_url, normalize_source_url


@pytest.mark.parametrize("url, absolute", [
    ("https://shop.example.com/checkout", True),
    ("https://shop.example.com", True),
    ("http://shop.example.com:8080/p", True),
    ("http://[2001:db8::1]:8080/p", True),
    ("https://user:secret@shop.example.com/p", True),
    ("android-app://com.example.shop/checkout", True),
    ("HTTPS://SHOP.EXAMPLE.COM/P", True),
    ("/checkout/thanks", False),             # relative path
    ("shop.example.com/p/9", False),         # bare host
    ("shop.example.com:8080/p", False),      # host and port, no scheme
    ("//shop.example.com/p", False),         # scheme-relative
    ("https://", False),                     # no host
    ("https:///p", False),                   # empty host
    ("https://:8080/p", False),              # a port but no host
    ("https://user@/p", False),              # user info but no host
    ("http://[/p", False),                   # an unclosed IPv6 bracket
    ("mailto:jo@example.com", False),        # a scheme, no authority
    ("1http://shop.example.com/", False),    # a scheme starts with a letter
    ("", False),
    (None, False),
    (5, False),
])
def test_absolute_means_a_scheme_and_a_host(url, absolute):
    assert is_absolute_url(url) is absolute


@pytest.mark.parametrize("url, keep_query, expected", [
    ("https://shop.example.com/thanks?email=jo%40x.com&t=1#top", False,
     "https://shop.example.com/thanks"),
    ("https://shop.example.com/thanks?email=jo%40x.com&t=1#top", True,
     "https://shop.example.com/thanks?email=jo%40x.com&t=1"),
    ("https://shop.example.com/p#section", False, "https://shop.example.com/p"),
    ("https://shop.example.com/p#section", True, "https://shop.example.com/p"),
    ("https://shop.example.com/p?", True, "https://shop.example.com/p"),
    ("https://shop.example.com/p?#x", False, "https://shop.example.com/p"),
    ("https://shop.example.com/p#a?b", True, "https://shop.example.com/p"),
    ("https://shop.example.com", False, "https://shop.example.com"),
    ("https://shop.example.com?x=1", False, "https://shop.example.com"),
    ("https://shop.example.com/", False, "https://shop.example.com/"),
    ("https://user:secret@shop.example.com:8443/p?q=1", False, "https://shop.example.com:8443/p"),
    ("https://user:secret@shop.example.com/p?q=1", True, "https://shop.example.com/p?q=1"),
    ("https://shop.example.com/p?next=a@b.com", True, "https://shop.example.com/p?next=a@b.com"),
    ("https://shop.example.com/users/@jo", False, "https://shop.example.com/users/@jo"),
    # not absolute: left for the validator, but the query and fragment are still removed
    ("/checkout/thanks?email=jo@x.com#f", False, "/checkout/thanks"),
    ("shop.example.com/p/9?x=1", False, "shop.example.com/p/9"),
])
def test_origin_and_path_are_kept(url, keep_query, expected):
    assert normalize_source_url(url, keep_query) == expected


@given(st.text(), st.booleans())
def test_normalizing_twice_changes_nothing(url, keep_query):
    once = normalize_source_url(url, keep_query)
    assert normalize_source_url(once, keep_query) == once
    assert "#" not in once

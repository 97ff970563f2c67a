"""Hostile and mistyped mapping files are refused when the mapping is loaded."""
from __future__ import annotations

import pytest

from transforms.errors import MappingFileError
from transforms.mapping import load_mapping, parse_mapping
from transforms.mapping_guards import MAX_EXPANDED_NODES


def alias_bomb(levels: int, width: int = 9) -> str:
    """`a: &a [x, x, ...]`, `b: &b [*a, *a, ...]`, ...: width ** levels values in a few bytes."""
    lines = ["version: 1", "event:", "  id: order_id", "data:", "  custom:",
             f"    l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"    l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_the_682_byte_alias_bomb_is_refused_before_it_expands():
    bomb = alias_bomb(9)            # 9 ** 9 = 387 million values
    assert len(bomb) < 700
    with pytest.raises(MappingFileError) as refused:
        parse_mapping(bomb, "bomb.yaml")
    assert str(refused.value) == (
        f"Mapping file 'bomb.yaml' expands to more than {MAX_EXPANDED_NODES:,} values once its "
        "aliases (*name) are replaced by what they refer to; a mapping this large is refused. Fix: "
        "write the fields out without nested anchors and aliases (&name / *name)")


def test_a_small_bomb_is_refused_too():
    with pytest.raises(MappingFileError, match="expands to more than 100,000 values"):
        parse_mapping(alias_bomb(6, width=10), "bomb.yaml")      # a million values


def test_a_recursive_alias_is_refused():
    with pytest.raises(MappingFileError, match="expands to more than"):
        parse_mapping("version: 1\nevent:\n  id: order_id\ndata:\n  custom:\n    loop: &a [*a]\n", "r.yaml")


@pytest.mark.parametrize("text", [
    "version: 1\nevent:\n  id: {constant: " + "x" * 10_000_000 + "}\n",     # a 10 MB constant
    "version: 1\n" + "".join(f"k{n}: {n}\n" for n in range(200_000)),       # 200,000 keys
])
def test_a_mapping_over_a_megabyte_is_refused_before_yaml_reads_it(text):
    with pytest.raises(MappingFileError) as refused:
        parse_mapping(text, "big.yaml")
    assert str(refused.value).startswith(
        f"Mapping file 'big.yaml' is {len(text):,} bytes; a mapping is at most 1,048,576 bytes")


def test_a_large_file_is_refused_through_load_mapping(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("version: 1\nevent:\n  id: {constant: " + "x" * 2_000_000 + "}\n")
    with pytest.raises(MappingFileError, match="is 2,000,037 bytes"):
        load_mapping(str(path))


@pytest.mark.parametrize("path, problem", [
    ("us\u0435r.email", "letters of several scripts: Latin (U+0075 LATIN SMALL LETTER U at position 1) "
                        "and Cyrillic (U+0435 CYRILLIC SMALL LETTER IE at position 3)"),
    ("user.\uff45mail", "the compatibility character U+FF45 FULLWIDTH LATIN SMALL LETTER E at position 1"),
    ("user.e\u200bmail", "the invisible character U+200B ZERO WIDTH SPACE at position 2"),
])
def test_a_look_alike_character_in_a_path_is_refused_naming_it(path, problem):
    text = f"extends: default\nuser:\n  fields:\n    email: {path}\n"
    with pytest.raises(MappingFileError) as refused:
        parse_mapping(text, "m.yaml")
    segment = next(part for part in path.split(".") if not part.isascii())
    assert str(refused.value) == (
        f"Mapping file 'm.yaml': the path {path!r} has {problem} in {segment!r}; it would name a "
        "column no export has. Fix: retype the path in plain letters (a look-alike character, "
        "often pasted from a document or chat)")


@pytest.mark.parametrize("path", ["client.prénom", "client.почта", "顧客.メール"])
def test_column_names_in_one_script_are_fine(path):
    plan = parse_mapping(f"extends: default\nuser:\n  fields:\n    email: {path}\n", "m.yaml")
    assert path in plan.required_columns

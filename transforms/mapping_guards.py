"""Hostile or mistyped mapping files, refused when the mapping is loaded (exit 2).

- Size: a mapping is a few kilobytes (the default one is ~3 KB). A file over `MAX_MAPPING_BYTES`
  (a 10 MB constant, 200,000 keys) is refused before YAML parses it.
- Aliases: YAML anchors let 682 bytes describe a billion-element document (`&a [x, x, ...]`,
  `&b [*a, *a, ...]`, ...). PyYAML builds it lazily, but anything that walks it (the schema
  check, the merge with the default mapping) expands it and memory grows past gigabytes. The
  composed node graph is measured with every alias counted at its full size, before anything is
  built from it: over `MAX_EXPANDED_NODES` nodes (the default mapping has ~160), it is refused.
- Look-alike characters: a path such as `usеr.email` with a Cyrillic `е` names a column that does
  not exist, and the field would be silently empty on every event. Column names in other scripts
  are fine (`prénom`, `почта`, `顧客`); a path segment that mixes Latin, Cyrillic or Greek letters,
  or holds invisible or compatibility characters (a zero-width space, fullwidth `ｕ`), is refused.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import yaml

from transforms.errors import MappingFileError

MAX_MAPPING_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000


def check_yaml_size(text: str, name: str) -> None:
    """Raises MappingFileError for a mapping too large as text or once its aliases expand."""
    size = len(text.encode("utf-8"))
    if size > MAX_MAPPING_BYTES:
        raise MappingFileError(
            f"Mapping file {name!r} is {size:,} bytes; a mapping is at most "
            f"{MAX_MAPPING_BYTES:,} bytes (the default mapping is ~3 KB). Fix: a mapping "
            "describes fields, not data: move long constants and lists into the source table")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return          # the loader reports the syntax error with its line and column
    except RecursionError:
        raise _too_large(name, "nests deeper than Python can follow") from None
    if root is not None and _expanded_nodes(root, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
        raise _too_large(name, f"expands to more than {MAX_EXPANDED_NODES:,} values once its "
                               "aliases (*name) are replaced by what they refer to")


def _too_large(name: str, why: str) -> MappingFileError:
    return MappingFileError(
        f"Mapping file {name!r} {why}; a mapping this large is refused. Fix: write the fields "
        "out without nested anchors and aliases (&name / *name)")


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """Node count with aliases expanded (memoized per node; stops counting past `limit`)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in in_progress:           # a recursive alias (&a [*a]): infinite
            return limit + 1
        in_progress.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: Iterable[yaml.Node] = node.value
        elif isinstance(node, yaml.MappingNode):
            children = (child for pair in node.value for child in pair)
        else:
            children = ()
        for child in children:
            total += size(child)
            if total > limit:
                break
        in_progress.discard(id(node))
        sizes[id(node)] = total
        return total

    try:
        return size(root)
    except RecursionError:
        return limit + 1


def check_path_characters(columns: Iterable[str], name: str) -> None:
    """Raises MappingFileError for a column path with a look-alike or invisible character."""
    for column in sorted(columns, key=lambda path: (-len(path), path)):   # full paths first
        for segment in column.split("."):
            problem = _confusable(segment)
            if problem:
                raise MappingFileError(
                    f"Mapping file {name!r}: the path {column!r} has {problem} in {segment!r}; "
                    "it would name a column no export has. Fix: retype the path in plain "
                    "letters (a look-alike character, often pasted from a document or chat)")


# Scripts with letters that look like Latin ones (а/a, е/e, о/o, ο/o, р/p, Ј/J, Տ/S, Ꭺ/A): a
# segment mixing two of them is a look-alike, not a name. (Japanese mixes Han and Kana: fine.)
_LOOK_ALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"})


def _confusable(segment: str) -> str | None:
    if segment.isascii():
        return None
    scripts: dict[str, str] = {}
    for position, char in enumerate(segment, start=1):
        category = unicodedata.category(char)
        described = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"
        if category[0] in "CZ":
            return f"the invisible character {described} at position {position}"
        if unicodedata.normalize("NFKC", char) != char:
            return f"the compatibility character {described} at position {position}"
        script = unicodedata.name(char, "?").split()[0]
        if category[0] == "L" and script in _LOOK_ALIKE_SCRIPTS:
            scripts.setdefault(script, f"{described} at position {position}")
    if len(scripts) > 1:
        return "letters of several scripts: " + " and ".join(
            f"{script.title()} ({first})" for script, first in scripts.items())
    return None

"""PHP-style bracket query strings (``seg[devices][]=DESK&ev[0][evt]=viewExp``) into nested data.

``a[]=x`` appends to a list, ``a[k]=x`` sets a key, ``a[0][k]=x`` indexes; a container whose keys are
all integers becomes a list ordered by index. Depth and index size are bounded so a hostile query cannot
build huge structures. An index is ASCII digits: a key of other digits (superscripts, Arabic-Indic, ...)
is refused rather than read by ``int()`` or taken for a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ingest.errors import bad_request

MAX_DEPTH = 5
MAX_INDEX = 10_000
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")
_INDEX_DIGITS = len(str(MAX_INDEX))


def _is_index(part: str) -> bool:
    return part.isascii() and part.isdigit()


def parse_bracket_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        m = _KEY_RE.match(raw_key)
        if not m:
            raise bad_request("invalid_query", f"query parameter name {raw_key!r} is not name or name[...]")
        path = [m.group(1), *_PART_RE.findall(m.group(2))]
        if len(path) > MAX_DEPTH:
            raise bad_request("invalid_query", f"query parameter {raw_key!r} nests deeper than {MAX_DEPTH}")
        _assign(root, path, value, raw_key)
    return _listify(root)


def _assign(node: dict[str, Any], path: list[str], value: str, raw_key: str) -> None:
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part == "":
            if not isinstance(node, dict):
                raise bad_request("invalid_query", f"query parameter {raw_key!r} mixes list and value")
            part = f"__append{len(node)}"
        elif part.isdigit():
            if not part.isascii():
                raise bad_request("invalid_query", f"index {part!r} in {raw_key!r} is not an ASCII number")
            if len(part.lstrip("0")) > _INDEX_DIGITS or int(part) > MAX_INDEX:
                raise bad_request("invalid_query", f"index in {raw_key[:80]!r} is larger than {MAX_INDEX}")
        if last:
            if part in node and isinstance(node[part], dict):
                raise bad_request("invalid_query", f"query parameter {raw_key!r} is both a value and a group")
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise bad_request("invalid_query", f"query parameter {raw_key!r} is both a value and a group")
        node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(_is_index(k) or k.startswith("__append") for k in converted):
        if all(k.startswith("__append") for k in converted):
            return list(converted.values())
        if all(_is_index(k) for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
    return {k: v for k, v in converted.items()}

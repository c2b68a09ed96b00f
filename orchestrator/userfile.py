"""The one safe way callfleet reads a YAML file a user hands it.

Inventories, policies, alert configs, release manifests and release sources all come
through here, so every one of them gets the same guarantees: a regular file only (a
FIFO would block forever, a directory or a symlink loop is a clear error), a size
budget, UTF-8, duplicate keys refused (PyYAML silently keeps the last), an expansion and
nesting budget (a few hundred bytes of aliases can expand into billions of nodes for
whatever walks the document later), no infinite or NaN number (named by its key), and
every failure one line naming the file, as InvalidInput (exit 2).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer

from orchestrator.errors import InvalidInput

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_INT_DIGITS = 30
VAULTED = "<vaulted>"


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader with budgets (expanded size, depth, integer size) and duplicate keys refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = Composer.get_single_node(self)
        if node is not None and _expanded_size(node, {}) > MAX_NODES:
            # Aliases are references while composing; whatever walks the document later
            # (validation, error messages) sees every expansion: refuse before that.
            raise yaml.composer.ComposerError(None, None, f"expands to more than {MAX_NODES} nodes "
                                              "(refused: alias expansion budget)", node.start_mark)
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(str(node.value)) > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(None, None, f"integer longer than {MAX_INT_DIGITS} digits",
                                                    node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it with its position
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes the document has once every alias is expanded (memoised: linear in the composed graph)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a self-referencing alias counts once instead of recursing forever
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    size = min(size, MAX_NODES + 1)
    memo[id(node)] = size
    return size


def non_finite_key(data: Any, prefix: tuple[object, ...] = ()) -> tuple[object, ...] | None:
    """The dotted key of the first infinite or NaN number in a parsed document, if any."""
    if isinstance(data, float) and not math.isfinite(data):
        return prefix
    items: Any = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = non_finite_key(value, (*prefix, key))
        if found is not None:
            return found
    return None


_SafeLoader.add_constructor("tag:yaml.org,2002:int", _SafeLoader.construct_yaml_int)
# An Ansible-vaulted value (`!vault |`) is opaque here: Ansible decrypts it, callfleet only
# checks the file around it.
_SafeLoader.add_constructor("!vault", lambda loader, node: VAULTED)


def read_text(path: Path, *, what: str) -> str:
    """The UTF-8 text of a regular file, or InvalidInput naming the file (never blocks on a FIFO)."""
    try:
        st = os.stat(path)  # follows symlinks: a link to a regular file is fine, a loop is an error
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else
                "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket")
        raise InvalidInput(f"{path}: cannot read the {what} file: it is {kind}, not a regular file")
    if st.st_size > MAX_BYTES:
        raise InvalidInput(f"{path}: {st.st_size} bytes: a {what} file may not exceed {MAX_BYTES} bytes")
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{path}: a {what} file may not exceed {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: byte {exc.start}: not UTF-8 text") from None


def parse_yaml(text: str, path: Path, *, finite: bool = True) -> Any:
    """Parse YAML text with the budgets above; errors are one line naming the file and line.

    `finite=False` leaves the non-finite check to the caller (`refuse_non_finite`), for a
    loader whose model reports other errors (an unknown key, say) first."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        position = getattr(exc, "position", None)  # ReaderError: a character YAML does not allow
        where = f"line {mark.line + 1}" if mark else f"character {position}" if position is not None else "(top)"
        raise InvalidInput(f"{path}: {where}: not valid YAML ({detail})") from None
    except RecursionError:
        raise InvalidInput(f"{path}: (top): not valid YAML (nested too deeply)") from None
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp such as 2026-13-45 10:00:00
        raise InvalidInput(f"{path}: (top): not valid YAML ({' '.join(str(exc).split())})") from None
    if finite:
        refuse_non_finite(data, path)
    return data


def refuse_non_finite(data: Any, path: Path) -> None:
    """InvalidInput naming the key of the first infinite or NaN number in a document."""
    bad = non_finite_key(data)
    if bad is not None:
        raise InvalidInput(f"{path}: {'.'.join(key_text(p) for p in bad) or '(top)'}: "
                           "numbers must be finite (no .inf or .nan)")


def load_yaml(path: Path, *, what: str, finite: bool = True) -> Any:
    """Read and parse a user's YAML file safely (see the module docstring)."""
    return parse_yaml(read_text(path, what=what), path, finite=finite)


def key_text(part: object) -> str:
    """One part of a dotted key, quoted when it would not read as one plain word (newlines, dots, spaces)."""
    text = str(part)
    plain = text and text.isprintable() and not any(c.isspace() or c == "." for c in text)
    return text if plain else repr(text)

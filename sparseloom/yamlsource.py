"""Read YAML workload files safely, resolve ``include:`` and remember where every key came from.

The result is plain data plus a map from key path to (file, line), so the
schema layer can point at the exact line of a bad value even when it came
from an included file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sparseloom.errors import InputError, Complaint

KeyPath = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[^\s\[\].]+$")

# Bounds on what one file may make the reader build. A workload of a thousand tasks with a dozen keys
# each is some 30,000 nodes and 100 KB; the bounds leave 30x and 40x room above that, and stop a
# "billion laughs" file (nested aliases, 1 KB that expands to 10^9 nodes) at the first node past them.
MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 1_000_000  # nodes after alias expansion: what the schema check walks
MAX_DEPTH = 64  # nesting of mappings and sequences; the workload schema needs 6


class _Bounds(yaml.YAMLError):
    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that counts the nodes an alias stands for, and the nesting depth, as it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}

    def _size(self, node: yaml.Node) -> int:
        known = self._sizes.get(id(node))
        if known is None:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            known = 1 + sum(self._size(c) for c in children)
            self._sizes[id(node)] = known
        return known

    def _charge(self, nodes: int, mark: yaml.Mark | None) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _Bounds(f"more than {MAX_NODES:,} nodes once aliases are expanded", mark)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._charge(self._size(target), event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Bounds(f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._charge(1, node.start_mark if node is not None else None)
        return node


@dataclass
class Located:
    """Data from one file and its includes, with the origin of every key."""

    data: Any
    origin: dict[KeyPath, tuple[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def where(self, path: KeyPath) -> tuple[str, int | None]:
        """The file and line of ``path``, or of its nearest located ancestor."""
        for cut in range(len(path), -1, -1):
            hit = self.origin.get(tuple(path[:cut]))
            if hit is not None:
                return hit
        return (self.files[0] if self.files else "", None)


def format_path(path: KeyPath) -> str:
    """``('tasks', 2, 'slo')`` -> ``tasks[2].slo``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{str(part)!r}]"  # odd keys stay readable and one token
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(
    node: yaml.Node,
    path: KeyPath,
    file: str,
    origin: dict[KeyPath, tuple[str, int]],
    problems: list[Complaint],
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Complaint(
                        format_path(path + (key,)),
                        "each key once per mapping",
                        "a duplicate key",
                        file,
                        line,
                    )
                )
            seen.add(key)
            origin[path + (key,)] = (file, line)
            _walk(value_node, path + (key,), file, origin, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            origin[path + (i,)] = (file, item.start_mark.line + 1)
            _walk(item, path + (i,), file, origin, problems)


def _read(path: Path, shown: str) -> str:
    """The file's text, refused past :data:`MAX_BYTES` before more than that is read."""
    with open(path, "rb") as fh:
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise InputError([Complaint("", f"a file of at most {MAX_BYTES // (1024 * 1024)} MiB",
                                  "a larger file", shown)])
    return raw.decode("utf-8")


def _parse(path: Path, shown: str) -> Located:
    try:
        text = _read(path, shown)
    except FileNotFoundError:
        raise InputError(
            [Complaint("", "an existing file", "no such file", shown)]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            [Complaint("", "a readable UTF-8 text file", type(exc).__name__, shown)]
        ) from None
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        expected = "a bounded YAML document" if isinstance(exc, _Bounds) else "valid YAML"
        raise InputError([Complaint("", expected, str(what), shown, line)]) from None
    finally:
        loader.dispose()
    origin: dict[KeyPath, tuple[str, int]] = {(): (shown, 1)}
    problems: list[Complaint] = []
    if node is not None:
        _walk(node, (), shown, origin, problems)
    if problems:
        raise InputError(problems)
    return Located(data, origin, [shown])


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return over


def load(path: str | Path, _stack: tuple[Path, ...] = ()) -> Located:
    """Load ``path``, resolving its ``include:`` list (relative paths, deep-merged, own keys win)."""
    real = Path(path).resolve()
    shown = str(path)
    if real in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, real))
        raise InputError([Complaint("include", "no include loop", chain, shown)])
    own = _parse(real, shown)
    if own.data is None:
        raise InputError(
            [Complaint("", "a mapping of top-level keys", "an empty file", shown, 1)]
        )
    if not isinstance(own.data, dict):
        raise InputError(
            [
                Complaint(
                    "", "a mapping of top-level keys", type(own.data).__name__, shown, 1
                )
            ]
        )
    includes = own.data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        file, line = own.where(("include",))
        raise InputError(
            [
                Complaint(
                    "include",
                    "a file path or a list of file paths",
                    repr(includes),
                    file,
                    line,
                )
            ]
        )
    merged = Located({}, {}, [shown])
    for i, inc in enumerate(includes):
        target = Path(shown).parent / inc
        if not target.exists():
            file, line = own.where(("include", i))
            raise InputError(
                [
                    Complaint(
                        f"include[{i}]",
                        "an existing file",
                        f"no such file {target}",
                        file,
                        line,
                    )
                ]
            )
        sub = load(target, (*_stack, real))
        merged.data = _merge(merged.data, sub.data)
        merged.origin.update(sub.origin)
        merged.files.extend(sub.files)
    merged.data = _merge(merged.data, own.data)
    merged.origin.update({k: v for k, v in own.origin.items() if k[:1] != ("include",)})
    merged.origin[()] = (shown, 1)
    return merged

"""YAML for configuration files: standard YAML, with limits that hostile input cannot pass.

On top of PyYAML's safe loader:
- duplicate keys are refused (the last one would win silently), merge keys (``<<: *base``)
  work as in standard YAML, and a key that is a list or a mapping is refused;
- an explicit tag on a value that is not one (``!!int abc``) is one line, never a traceback,
  and never shows the value (it may be a secret);
- nesting deeper than `MAX_DEPTH` and documents of more than `MAX_VALUES` values once aliases
  are expanded (the "billion laughs") are refused before anything walks them;
- every error names the line and column, never PyYAML's ``<unicode string>``.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_DEPTH = 64
MAX_VALUES = 100_000

MERGE_TAG = "tag:yaml.org,2002:merge"
TAG_WORDS = {
    "tag:yaml.org,2002:int": "a whole number (!!int)",
    "tag:yaml.org,2002:float": "a number (!!float)",
    "tag:yaml.org,2002:bool": "true or false (!!bool)",
    "tag:yaml.org,2002:timestamp": "a date or time (!!timestamp)",
    "tag:yaml.org,2002:null": "empty (!!null)",
    "tag:yaml.org,2002:binary": "base64 data (!!binary)",
}


class YamlProblem(Exception):
    """One problem of a YAML document; `line` and `column` count from 1, when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message)

    def where(self) -> str:
        if self.line is None:
            return ""
        column = f", column {self.column}" if self.column is not None else ""
        return f"line {self.line}{column}"


def _mark_error(problem: str, mark: Any) -> ConstructorError:
    return ConstructorError(None, None, problem, mark)


class _ConfigLoader(yaml.SafeLoader):
    """A safe loader with depth, size, duplicate-key and tag checks."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    # --- composing: depth ---------------------------------------------------------------

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _mark_error(f"nested more than {MAX_DEPTH} levels deep (the limit of a "
                                  "configuration file)",
                                  self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    # --- constructing: values a user wrote, whatever their tag --------------------------

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ConstructorError, RecursionError):
            raise
        except Exception:
            # PyYAML's own converters fail with bare exceptions (ValueError, KeyError,
            # IndexError...) whose text shows the value.
            wanted = TAG_WORDS.get(node.tag, node.tag)
            raise _mark_error(f"this value cannot be read as {wanted}; remove the tag or fix "
                              "the value", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise _mark_error("expected a mapping here", node.start_mark)
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            if isinstance(key_node, MappingNode | SequenceNode):
                raise _mark_error("a list or a mapping cannot be a key; keys are names",
                                  key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise _mark_error("this key cannot be used as a name", key_node.start_mark
                                  ) from None
            if first is not None:
                raise _mark_error(f"duplicate key {str(key)[:60]!r} (first defined at line "
                                  f"{first.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        # Standard merge keys: the mapping's own keys override the merged ones.
        return super().construct_mapping(node, deep)


_ConfigLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    lambda loader, node: loader.construct_mapping(node),  # type: ignore[arg-type]
)


def expanded_size(root: Node, limit: int = MAX_VALUES) -> int:
    """How many values the document holds once every alias is expanded, counted up to
    just past `limit` (shared nodes are sized once, so this is linear in the document)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in in_progress:
            raise _mark_error("an alias here refers to a value that contains it (a cycle)",
                              node.start_mark)
        in_progress.add(id(node))
        total = 1
        if isinstance(node, SequenceNode):
            for child in node.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                total += size(key) + size(value)
                if total > limit:
                    break
        in_progress.discard(id(node))
        sizes[id(node)] = min(total, limit + 1)
        return sizes[id(node)]

    return size(root)


def _problem_from(exc: yaml.YAMLError, text: str) -> YamlProblem:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a byte"
        return YamlProblem(f"invalid character {character} (control characters are not "
                           "allowed in YAML)", line, column)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        if problem.startswith("but found another document"):
            problem = "found a second YAML document ('---'); a configuration holds exactly one"
        if mark is None:
            return YamlProblem(problem)
        return YamlProblem(problem, mark.line + 1, mark.column + 1)
    return YamlProblem(type(exc).__name__)


def load(text: str) -> Any:
    """The single document of `text` as plain data; raises YamlProblem."""
    try:
        loader = _ConfigLoader(text)  # checks every character up front
    except yaml.YAMLError as exc:
        raise _problem_from(exc, text) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_VALUES:
            raise YamlProblem(f"holds more than {MAX_VALUES} values once its aliases are "
                              "expanded (the limit of a configuration file)")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _problem_from(exc, text) from None
    except RecursionError:
        raise YamlProblem(f"nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()

"""Checking raw configuration data against the JSON Schema, in words a user understands.

The validator is draft-07 with three corrections that make "passes --validate" mean "runs":
- ``integer`` means a whole number written as one: ``8.0`` is refused, not passed on as a
  float that crashes later;
- ``$`` in a pattern means the end of the text, as in JSON Schema's (ECMA 262) regular
  expressions; Python's ``$`` also matches before a final newline, so ``"us-west-2\\n"`` would
  pass;
- references are resolved offline only: a ``$ref`` to a URL is an error, never a download.

Every string, key or value, is also checked for control characters (a line break in a job
name splits every log line; in a credential it breaks the request).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.validators
from jsonschema_specifications import REGISTRY as METASCHEMAS  # type: ignore[import-untyped]

from molibackup.config.sensitive import SECRET_OPTIONS
from molibackup.errors import ConfigError

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")

_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping of options",
    "array": "a list",
    "null": "empty",
}


# --- the validator --------------------------------------------------------------------


def ecma_pattern(pattern: str) -> str:
    """`pattern` with every end anchor meaning the very end of the text, as in ECMA 262."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "$" and not in_class:
            out.append(r"\Z")
            continue
        out.append(char)
    return "".join(out)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not re.search(ecma_pattern(pattern), instance):
        yield jsonschema.ValidationError(f"does not match {pattern!r}")


def _is_integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft7Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def validator_for(schema: Mapping[str, Any] | bool) -> Any:
    # The registry knows the JSON Schema meta-schemas and nothing else: no retrieval.
    return _Validator(schema, registry=METASCHEMAS)


# --- messages -------------------------------------------------------------------------


def describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def location(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _is_secret(path: Iterable[Any], schema: Mapping[str, Any]) -> bool:
    parts = list(path)
    return bool(schema.get("writeOnly")) or bool(parts and parts[-1] in SECRET_OPTIONS)


@dataclass(frozen=True)
class _Seen:
    """One schema error as a message needs it: where, what was found (or that it is
    secret), what the schema asks for."""

    error: jsonschema.ValidationError
    where: str
    schema: Mapping[str, Any]
    expected: str | None
    got: str
    secret: bool  # the option itself is secret: neither its value nor a guess is shown

    @property
    def instance(self) -> Any:
        return self.error.instance

    @property
    def value(self) -> Any:
        return self.error.validator_value

    def one(self, message: str) -> list[tuple[str, str]]:
        return [(self.where, message)]


def _unknown_options(seen: _Seen) -> list[tuple[str, str]]:
    if not isinstance(seen.instance, dict):
        return seen.one(seen.error.message)
    allowed = sorted(seen.schema.get("properties", {}))
    patterns = list(seen.schema.get("patternProperties", {}))
    unknown = [key for key in seen.instance if key not in allowed
               and not any(re.search(p, str(key)) for p in patterns)]
    lines = []
    for key in sorted(unknown, key=str):
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        valid = f"; valid options: {', '.join(allowed)}" if not hint else ""
        lines.append((f"{seen.where}.{key}" if seen.error.absolute_path else str(key),
                      f"unknown option{suggestion}{valid}"))
    return lines


def _missing(seen: _Seen) -> list[tuple[str, str]]:
    if not isinstance(seen.instance, dict):
        return seen.one(seen.error.message)
    return [(seen.where, f"missing required option '{key}'")
            for key in seen.value if key not in seen.instance]


def _dependencies(seen: _Seen) -> list[tuple[str, str]]:
    if not isinstance(seen.instance, dict):
        return seen.one(seen.error.message)
    return [(seen.where, f"'{key}' is set but '{other}' is missing: give both or neither")
            for key, needed in seen.value.items()
            for other in (needed if isinstance(needed, list) else [])
            if key in seen.instance and other not in seen.instance]


def _empty_map(seen: _Seen) -> list[tuple[str, str]]:
    if seen.where == "jobs":
        return seen.one("no jobs defined: add at least one job")
    return seen.one(f"must not be empty{f'; expected {seen.expected}' if seen.expected else ''}")


def _wrong_type(seen: _Seen) -> list[tuple[str, str]]:
    types = seen.value if isinstance(seen.value, list) else [seen.value]
    words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
    return seen.one(f"must be {words}, got {seen.got}")


def _not_a_choice(seen: _Seen) -> list[tuple[str, str]]:
    choices = ", ".join(str(choice) for choice in seen.value)
    hint = difflib.get_close_matches(str(seen.instance), [str(c) for c in seen.value], n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint and not seen.secret else ""
    return seen.one(f"must be one of: {choices}; got {seen.got}{suggestion}")


#: What each JSON Schema keyword's failure says, when the schema has no `x-expected` for it.
_MESSAGES: dict[str, Callable[[_Seen], list[tuple[str, str]]]] = {
    "additionalProperties": _unknown_options,
    "required": _missing,
    "dependencies": _dependencies,
    "propertyNames": lambda s: s.one(
        f"invalid name {s.got}: must be {s.expected or 'a valid name'}"),
    "minProperties": _empty_map,
    "maxProperties": lambda s: s.one(f"must have at most {s.value} entries"),
    "type": _wrong_type,
    "enum": _not_a_choice,
    "const": lambda s: s.one(f"must be {s.value!r}, got {s.got}"),
    "minimum": lambda s: s.one(f"must be at least {s.value}, got {s.got}"),
    "maximum": lambda s: s.one(f"must be at most {s.value}, got {s.got}"),
    "minLength": lambda s: s.one("must not be empty"),
    "maxLength": lambda s: s.one(f"must be at most {s.value} characters long"),
    "pattern": lambda s: s.one(f"must match the pattern {s.value}, got {s.got}"),
}
#: The keywords whose failure reads the schema's `x-expected` ("a duration such as 7d").
_EXPECTED_KINDS = frozenset({"type", "pattern", "minimum", "maximum", "maxLength"})


def messages_for(error: jsonschema.ValidationError,
                 secret_values: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(location, message) pairs for one schema error; a value that is also a secret's value
    elsewhere in the file is not shown either."""
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    kind = str(error.validator)
    expected = (schema.get("x-expected-pattern") if kind == "pattern" else None
                ) or schema.get("x-expected")
    secret = _is_secret(error.absolute_path, schema)
    # A secret's value must not reach the log, even when it is the wrong type.
    hidden = secret or (isinstance(error.instance, str | int | float)
                        and str(error.instance) in secret_values)
    seen = _Seen(error, location(error.absolute_path), schema, expected,
                 "a value (not shown: it is secret)" if hidden else describe(error.instance),
                 secret)
    if kind in {"not", "anyOf", "oneOf"}:
        return seen.one(str(schema.get("x-message") or f"is not allowed here ({kind})"))
    if expected and kind in _EXPECTED_KINDS:
        return seen.one(f"must be {expected}" if kind == "pattern" and secret
                        else f"must be {expected}, got {seen.got}")
    render = _MESSAGES.get(kind)
    if render is not None:
        return render(seen)
    return seen.one(error.message if not secret else f"is not valid ({kind})")


def _leaf_errors(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """The specific errors behind an allOf/if-then wrapper, not the wrapper itself."""
    if error.context and error.validator not in {"not", "anyOf", "oneOf"}:
        for sub in error.context:
            yield from _leaf_errors(sub)
    else:
        yield error


def _path_key(error: jsonschema.ValidationError) -> list[str]:
    return [str(part) for part in error.absolute_path]


def schema_problems(data: Any, schema: Mapping[str, Any] | bool, source: Path,
                    prefix: Iterable[Any] = (),
                    secret_values: frozenset[str] = frozenset()) -> list[str]:
    """One line per problem of `data` against `schema`, located below `prefix`."""
    lines: list[str] = []
    base = list(prefix)
    for error in sorted(validator_for(schema).iter_errors(data), key=_path_key):
        for leaf in _leaf_errors(error):
            for where, message in messages_for(leaf, secret_values):
                full = location([*base, where]) if base and where != "(top level)" else (
                    location(base) if base else where)
                line = f"{source}: {full}: {message}"
                if line not in lines:
                    lines.append(line)
    return lines


# --- checks the schema cannot express -------------------------------------------------


def control_character_problems(data: Any, source: Path) -> list[str]:
    """A line for every key or string value that holds a control character."""
    lines: list[str] = []

    def visit(value: Any, path: list[Any]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _CONTROL.search(key):
                    lines.append(f"{source}: {location(path) if path else '(top level)'}: the "
                                 f"name {_shown_key(key)} contains {_which(key)}")
                visit(item, [*path, key if not isinstance(key, str) else _printable(key)])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, [*path, index])
        elif isinstance(value, str) and _CONTROL.search(value):
            lines.append(f"{source}: {location(path)}: contains {_which(value)}; remove it "
                         "(a value copied from a file often ends with a newline)")

    visit(data, [])
    return lines


def _printable(text: str) -> str:
    return _CONTROL.sub("?", text)


def _shown_key(key: str) -> str:
    return repr(_printable(key)[:60])


def _which(text: str) -> str:
    if "\n" in text:
        return "a line break at its end" if text.endswith("\n") else "a line break"
    match = _CONTROL.search(text)
    assert match is not None
    return f"a control character (U+{ord(match.group()):04X})"


def module_guess_problems(data: Any, schema: Mapping[str, Any], source: Path,
                          secret_values: frozenset[str] = frozenset()) -> list[str]:
    """Problems of jobs whose module is missing or unknown, checked as the closest module.

    A wrong `module:` would otherwise hide every other mistake of the job until it is fixed.
    """
    definitions = schema.get("definitions", {}) if isinstance(schema, dict) else {}
    modules = [str(m) for m in definitions.get("module", {}).get("enum", [])]
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not modules or not isinstance(jobs, dict):
        return []
    lines: list[str] = []
    for name, job in jobs.items():
        if not isinstance(job, dict) or job.get("module") in modules:
            continue
        written = job.get("module")
        close = difflib.get_close_matches(str(written), modules, n=1) if written else []
        guess = close[0] if close else (modules[0] if len(modules) == 1 else None)
        if guess is None or guess not in definitions:
            continue
        as_guess = {**job, "module": guess}
        lines.extend(schema_problems(
            as_guess, {"definitions": definitions, "$ref": f"#/definitions/{guess}"}, source,
            prefix=["jobs", name], secret_values=secret_values))
    return lines


def named_keys_only(data: Any, source: Path, problems: list[str], path: tuple[Any, ...] = ()
                    ) -> Any:
    """`data` without the mapping entries whose key is not a string (YAML allows numbers,
    dates or nothing as keys; every name of a configuration is text), each one reported."""
    if isinstance(data, dict):
        kept = {}
        for key, value in data.items():
            if isinstance(key, str):
                kept[key] = named_keys_only(value, source, problems, (*path, key))
            else:
                problems.append(f"{source}: {location(path)}: the key {describe(key)} is not a "
                                "name; quote it if it is meant as one")
        return kept
    if isinstance(data, list):
        return [named_keys_only(item, source, problems, (*path, index))
                for index, item in enumerate(data)]
    return data


def check(data: Any, schema: Mapping[str, Any] | bool, source: Path,
          secret_values: frozenset[str] = frozenset()) -> list[str]:
    """Every problem of raw configuration data, one line each."""
    lines: list[str] = []
    data = named_keys_only(data, source, lines)
    lines += schema_problems(data, schema, source, secret_values=secret_values)
    if isinstance(schema, dict):
        lines += [line for line in module_guess_problems(data, schema, source, secret_values)
                  if line not in lines]
    # A name or value already refused (by a pattern) needs no second line about its characters.
    refused = {line.split(": ", 2)[1] for line in lines if line.count(": ") >= 2}
    lines += [line for line in control_character_problems(data, source)
              if line.split(": ", 2)[1] not in refused]
    return lines


def check_schema(schema: Any, path: Path) -> None:
    """Refuse a schema document that is not a usable draft-07 schema."""
    if not isinstance(schema, dict | bool):
        raise ConfigError([f"{path}: the schema must be a JSON object"])
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError([f"{path}: not a valid JSON Schema: {exc.message[:200]}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: not a usable JSON Schema: nested too deeply"]) from None

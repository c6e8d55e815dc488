"""How a config is read and checked against a schema: the machinery, not the keys.

A schema is a nested mapping of `Field` leaves and sections (a plain dict, or a
`Section` when it may be null); rules are (keys, function) pairs that check values
against each other. `sgma_keras.config` holds the project's schema and rules and hands
them to the functions here:

* `read_config_file`: a JSON file, size-bounded, its duplicate keys remembered, a
  syntax error shown at its line and column, a missing file named with the built-in
  configs (`find_config`).
* `apply_overrides`: `a.b=value` items (`parse_override`) merged into a raw config,
  unknown keys collected with a suggestion.
* `validate`: every key coerced or reported, defaults filled, the rules run on the
  values that are valid, the data paths the chosen `data.source` needs checked.

Every problem is collected; one `ConfigError` lists them all.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

from sgma_keras.errors import UserError
from sgma_keras.fields import PATH
from sgma_keras.fields import Invalid as _Invalid
from sgma_keras.fields import show as _show
from sgma_keras.registry import SOURCES
from sgma_keras.text_input import MiB, read_text
from sgma_keras.upgrade import upgrade_override, upgrade_run_config

__all__ = [
    "MISSING",
    "ConfigError",
    "Section",
    "Rule",
    "iter_fields",
    "iter_sections",
    "lookup",
    "read_config_file",
    "parse_override",
    "apply_overrides",
    "validate",
    "load",
    "builtin_config_dir",
    "builtin_config_names",
    "find_config",
]

# What `lookup` returns for a path that is not there (a value may be None).
MISSING = object()

# A cross-field rule: the key paths whose values it takes, and a function of them that
# returns None or an error message starting with a key path.
Rule = tuple[tuple[str, ...], Callable[..., "str | None"]]


class Section(dict):
    """A schema section: key -> Field or Section. `nullable`: `null` turns off what the
    section builds (`model.center: null`); `doc`: its line in the reference."""

    def __init__(self, fields, *, nullable=False, doc=""):
        super().__init__(fields)
        self.nullable = nullable
        self.doc = doc


class ConfigError(UserError):
    """Invalid configuration; ``errors`` lists each problem, prefixed by its key path."""

    def __init__(self, errors: str | Iterable[str], source: str | None = None):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = None if source is None else str(source)
        where = f" {self.source!r}" if self.source else ""
        n = len(self.errors)
        head = f"invalid configuration{where} ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n  - ".join([head, *self.errors]))


# ---------------------------------------------------------------------------------------
# Walking a schema
# ---------------------------------------------------------------------------------------

def iter_fields(schema: Mapping, prefix: str = ""):
    """(key path, Field) for every leaf, in schema order."""
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if isinstance(spec, Mapping):
            yield from iter_fields(spec, path + ".")
        else:
            yield path, spec


def iter_sections(schema: Mapping, prefix: str = ""):
    """(key path, section) for every section, in schema order."""
    for key, spec in schema.items():
        if isinstance(spec, Mapping):
            yield f"{prefix}{key}", spec
            yield from iter_sections(spec, f"{prefix}{key}.")


def _all_paths(schema: Mapping, prefix: str = ""):
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(spec, Mapping):
            yield from _all_paths(spec, path + ".")


def lookup(tree: Mapping, path: str, default=MISSING):
    """The value at key path `path` ("a.b.c") of a nested mapping, else `default`."""
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _suggest(name: str, section: Mapping, schema: Mapping) -> str:
    """' (did you mean ...?)' for an unknown key ``name`` found in ``section``."""
    paths = list(_all_paths(schema))
    elsewhere = [p for p in paths if p.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return " (did you mean " + " or ".join(repr(p) for p in elsewhere[:3]) + "?)"
    close = difflib.get_close_matches(name, list(section), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    leaves = {}
    for p in paths:
        leaves.setdefault(p.rsplit(".", 1)[-1], p)
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.75)
    if close:
        return f" (did you mean {leaves[close[0]]!r}?)"
    return ""


# ---------------------------------------------------------------------------------------
# Reading, overrides, validation
# ---------------------------------------------------------------------------------------

class _Obj(dict):
    """A JSON object that remembers keys it saw twice."""
    duplicates: tuple = ()


def _pairs(pairs):
    obj = _Obj()
    dups = []
    for k, v in pairs:
        if k in obj:
            dups.append(k)
        obj[k] = v
    obj.duplicates = tuple(dups)
    return obj


# Configs are a few KiB; the bound refuses /dev/urandom or a huge file before it fills
# memory.
MAX_CONFIG_BYTES = MiB


def read_config_file(path: str) -> Any:
    """The JSON of a config file (objects remember duplicate keys); ConfigError on any
    problem: missing, unreadable, too large, not JSON."""
    try:
        text = read_text(path, "config file", MAX_CONFIG_BYTES,
                         error=lambda message: ConfigError(message, source=path))
    except FileNotFoundError:
        raise ConfigError(_not_found(path), source=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file: {e}", source=path) from None
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        lines = text.splitlines()
        shown = lines[e.lineno - 1] if 0 < e.lineno <= len(lines) else ""
        raise ConfigError(
            f"{path}:{e.lineno}:{e.colno}: invalid JSON at line {e.lineno}, column {e.colno}: "
            f"{e.msg}\n      | {shown}\n      | {' ' * (e.colno - 1)}^",
            source=path) from None


def parse_override(item: str) -> tuple[str, Any]:
    """Split 'a.b=value' into ('a.b', value); value is parsed as JSON, else kept a string."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. model.num_parts=3")
    key, _, text = item.partition("=")
    key = key.strip()
    if key.startswith("--set"):  # tolerate '--set a.b=1' passed as one string
        key = key[len("--set"):].strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key, value


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(raw: Mapping, overrides: Iterable[str], schema: Mapping,
                    errors: list[str] | None = None) -> dict:
    """Return a copy of ``raw`` with 'a.b=value' overrides applied.

    Unknown keys are collected into ``errors`` when given, else raised as ConfigError.
    Values are not validated here (`validate` does that).
    """
    own = errors is None
    errors = [] if own else errors
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else dict(raw)
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        try:
            parsed = parse_override(item)
        except ConfigError as e:
            errors.extend(e.errors)
            continue
        for key, value in upgrade_override(*parsed):
            parts = key.split(".")
            if any(not p for p in parts):
                errors.append(f"override {item!r}: malformed key {key!r}")
                continue
            spec: Any = schema
            for i, part in enumerate(parts):
                if not isinstance(spec, Mapping):
                    errors.append(f"{'.'.join(parts[:i])}: is a value, not a section, so "
                                  f"{key!r} does not exist (override {item!r})")
                    break
                if part not in spec and not part.startswith("_"):
                    errors.append(f"{'.'.join(parts[:i + 1])}: unknown key"
                                  f"{_suggest(part, spec, schema)} (override {item!r})")
                    break
                spec = spec.get(part)
            else:
                node = raw
                for part in parts[:-1]:
                    if not isinstance(node.get(part), dict):
                        node[part] = {}
                    node = node[part]
                last = parts[-1]
                if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
                    node[last] = _deep_merge(node[last], value)
                else:
                    node[last] = value
    if own and errors:
        raise ConfigError(errors)
    return raw


def _resolve(raw: Any, schema: Mapping, prefix: str, errors: list[str], bad: set,
             full: Mapping) -> dict:
    out: dict[str, Any] = {}
    for dup in getattr(raw, "duplicates", ()):
        errors.append(f"{prefix}{dup}: duplicate key (only the last value would be used)")
    for key in raw:
        if isinstance(key, str) and key.startswith("_"):
            continue  # comment
        if key not in schema:
            errors.append(f"{prefix}{key}: unknown key{_suggest(str(key), schema, full)}")
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        value = raw.get(key, MISSING)
        if isinstance(spec, Mapping):
            if value is None and getattr(spec, "nullable", False):
                out[key] = None
                continue
            if value is MISSING:
                value = {}
            elif not isinstance(value, Mapping):
                errors.append(f"{path}: expected a section (JSON object with keys "
                              f"{', '.join(list(spec)[:4])}{', ...' if len(spec) > 4 else ''}),"
                              f" got {_show(value)}")
                bad.update(p for p in _all_paths(spec, path + "."))
                value = {}
            out[key] = _resolve(value, spec, path + ".", errors, bad, full)
        elif value is MISSING:
            out[key] = copy.deepcopy(spec.default)
        else:
            try:
                out[key] = spec.coerce(value)
            except _Invalid as e:
                errors.append(f"{path}: {e}")
                bad.add(path)
                out[key] = copy.deepcopy(spec.default)
    return out


def _check_paths(cfg: dict, schema: Mapping, bad: set, errors: list[str]) -> None:
    source = lookup(cfg, "data.source", None)
    if "data.source" in bad:
        return  # which paths matter is unknown
    cwd = os.getcwd()
    # Per path: the sources that require it, and those that read its section.
    required_by, read_by = {}, {}
    for entry in SOURCES:
        for key in entry.requires:
            required_by.setdefault(f"data.{key}", set()).add(entry.name)
        if entry.section:
            read_by.setdefault(f"data.{entry.section}", set()).add(entry.name)
    for path, field in iter_fields(schema):
        if field.type is not PATH or (field.exists is None and path not in required_by):
            continue
        if path in bad:
            continue
        gate = next((srcs for sec, srcs in read_by.items() if path.startswith(sec + ".")),
                    None)
        if gate is not None and source not in gate:
            continue
        if path in required_by and source not in required_by[path]:
            continue
        value = lookup(cfg, path, None)
        why = f" (needed by data.source {source!r})" if path in required_by else ""
        if value is None:
            if path in required_by:
                errors.append(f"{path}: required for data.source {source!r}, got null")
            continue
        if value in field.literals or field.exists is None:
            continue
        full = os.path.expanduser(value)
        rel = "" if os.path.isabs(full) else f" (relative to {cwd})"
        if not os.path.exists(full):
            kind = "directory" if field.exists == "dir" else "file"
            errors.append(f"{path}: {kind} not found: {value!r}{rel}{why}")
        elif field.exists == "dir" and not os.path.isdir(full):
            errors.append(f"{path}: not a directory: {value!r}{why}")
        elif field.exists == "file" and not os.path.isfile(full):
            errors.append(f"{path}: not a file: {value!r}{why}")
        elif field.contains:
            missing = [f for f in field.contains if not os.path.isfile(os.path.join(full, f))]
            if missing:
                errors.append(f"{path}: {value!r} lacks {', '.join(missing)}{rel}{why}")


def validate(raw: Mapping, schema: Mapping, rules: Iterable[Rule] = (), *,
             check_paths: bool = True, source: str | None = None,
             errors: list[str] | None = None) -> dict:
    """Validate a raw (partial) config dict against `schema`, fill defaults, run `rules`.

    A rule runs only when all of its keys are in the schema, valid, and not inside a
    section turned off (null). `check_paths`: the paths the chosen `data.source` needs
    (and `Field(exists=...)` paths) must exist. Problems are added to `errors` (a new
    list if None); any problem raises ConfigError listing all of them, `source` naming
    the origin. Returns the resolved dict (every schema key present, comments dropped).
    """
    errors = [] if errors is None else errors
    bad: set[str] = set()
    if not isinstance(raw, Mapping):
        errors.append(f"top level: expected a JSON object, got {_show(raw)}")
        raw = {}
    cfg = _resolve(raw, schema, "", errors, bad, schema)
    for keys, fn in rules:
        if any(lookup(schema, k) is MISSING or any(b == k or b.startswith(k + ".")
                                                   for b in bad) for k in keys):
            continue
        values = [lookup(cfg, k) for k in keys]
        if any(v is MISSING for v in values):
            continue  # in a section turned off (null)
        msg = fn(*values)
        if msg:
            errors.append(msg)
    if check_paths:
        _check_paths(cfg, schema, bad, errors)
    if errors:
        raise ConfigError(errors, source=source)
    return cfg


def load(path: str | os.PathLike | None, overrides: Iterable[str], schema: Mapping,
         rules: Sequence[Rule] = (), *, check_paths: bool = True) -> dict:
    """Read a JSON config (None: start from the defaults), upgrade a file of the first,
    flat layout (`sgma_keras.upgrade`), apply 'a.b=value' overrides and `validate`.

    Problems of the file's top level and of the overrides are reported together with
    those of validation, in one ConfigError.
    """
    source = None if path is None else os.fspath(path)
    raw = {} if source is None else read_config_file(source)
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        errors.append(f"top level: expected a JSON object, got {_show(raw)}")
        raw = {}
    raw = upgrade_run_config(raw, source)
    raw = apply_overrides(raw, overrides, schema, errors)
    return validate(raw, schema, rules, check_paths=check_paths, source=source, errors=errors)


# ---------------------------------------------------------------------------------------
# The built-in configs (configs/: demo, awa, cub, flo, ...)
# ---------------------------------------------------------------------------------------

def builtin_config_dir() -> str | None:
    """The folder of the configs that ship with the package (demo, awa, cub, flo, ...).

    An installed package carries them as ``sgma_keras/configs/`` (pyproject.toml maps the
    repository's ``configs/`` there); a source checkout has them in ``configs/`` beside
    the package. None if neither exists.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isfile(os.path.join(folder, "demo.json")):
            return folder
    return None


def builtin_config_names() -> list[str]:
    """The names of the built-in configs (`demo`, `awa`, ...), sorted; [] if none ship."""
    folder = builtin_config_dir()
    if folder is None:
        return []
    return sorted(name[:-len(".json")] for name in os.listdir(folder)
                  if name.endswith(".json"))


def _not_found(path: str) -> str:
    """"config file not found", the built-in configs and the closest name."""
    names = builtin_config_names()
    text = "config file not found"
    if names:
        text += f"; built-in configs: {', '.join(names)}"
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        close = difflib.get_close_matches(stem, names, n=1, cutoff=0.6)
        if close:
            text += f" (did you mean {close[0]!r}?)"
    return text


def find_config(path: str | os.PathLike) -> str:
    """The config file a command line names.

    A path that exists is used as given (a relative one against the current folder, as
    any file argument). Otherwise, if it names a built-in config (``demo``,
    ``demo.json`` or ``configs/demo.json``), the package's copy of it; else the path
    unchanged, which `load_config` then reports as not found. So ``sgma-train --config
    configs/demo.json`` works from any folder once the package is installed.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    folder = builtin_config_dir()
    head, name = os.path.split(os.path.normpath(path))
    if folder is None or head not in ("", "configs"):
        return path
    name = name if name.endswith(".json") else name + ".json"
    candidate = os.path.join(folder, name)
    return candidate if os.path.isfile(candidate) else path


"""One declared value: its type, default, range, choices and one-line doc (`Field`).

Framework-free, so that the config schema (`sgma_keras.config`) and the argument
declarations of the model's layers (`sgma_keras.arguments`) share it and a config is
checked without loading Keras.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

__all__ = ["PATH", "Field", "Invalid", "show", "num"]

PATH = "path"  # Field type marker: a filesystem path (a non-empty string)


class Invalid(Exception):
    pass


def show(value: Any) -> str:
    """A value as the user wrote it (JSON), shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def num(x: float) -> str:
    return repr(x) if isinstance(x, float) and not x.is_integer() else f"{x:g}"


class Field:
    """One config value.

    Args:
      type: ``int``, ``float`` (JSON ints accepted, stored as float), ``bool``, ``str``,
        ``PATH`` (a path string) or ``list`` (then ``item`` gives the item type and
        ``length`` an optional fixed length; range limits apply to the items).
      default: the default value; ``None`` makes the field nullable.
      doc: one line for the README table.
      choices: allowed values (an enum), or a function returning them (read at each use:
        the names of a registry, which may grow after the schema is built).
      min, max: inclusive bounds; gt, lt: exclusive bounds.
      nullable: allow ``null`` (implied by a ``None`` default).
      literals: extra string values accepted verbatim besides the type (e.g. "imagenet").
      exists: "file" or "dir": when set (and path checks are on) the path must exist.
      contains: files a ``dir`` path must hold.
      architecture: the value shapes the trained weights (a saved model of another
        value does not fit, and a run folder never continues under a change of it).
    """

    def __init__(self, type, default, *, doc: str = "", choices=None, min=None, max=None,
                 gt=None, lt=None, nullable: bool | None = None, literals=(), item=None,
                 length: int | None = None, exists: str | None = None, contains=(),
                 architecture: bool = False):
        if type not in (int, float, bool, str, PATH, list):
            raise TypeError(f"unsupported Field type {type!r}")
        if type is list and item not in (int, float, bool, str, PATH):
            raise TypeError("a list Field needs item=int|float|bool|str|PATH")
        if exists not in (None, "file", "dir"):
            raise ValueError("exists must be None, 'file' or 'dir'")
        self.type = type
        self.doc = doc
        self._choices = choices if callable(choices) or choices is None else tuple(choices)
        self.min, self.max, self.gt, self.lt = min, max, gt, lt
        self.nullable = (default is None) if nullable is None else bool(nullable)
        self.literals = tuple(literals)
        self.item = item
        self.length = length
        self.exists = exists
        self.contains = tuple(contains)
        self.architecture = bool(architecture)
        try:
            self.default = self.coerce(default)
        except Invalid as e:  # a schema bug: fail at import time
            raise ValueError(f"Field default {default!r} is invalid: {e}") from None

    @property
    def choices(self) -> tuple | None:
        return tuple(self._choices()) if callable(self._choices) else self._choices

    # -- descriptions ------------------------------------------------------------------
    def _range(self) -> str:
        lo = hi = None
        if self.min is not None or self.gt is not None:
            lo = (self.min, "[") if self.min is not None else (self.gt, "(")
        if self.max is not None or self.lt is not None:
            hi = (self.max, "]") if self.max is not None else (self.lt, ")")
        if lo and hi:
            return f" in {lo[1]}{num(lo[0])}, {num(hi[0])}{hi[1]}"
        if lo:
            return f" {'>=' if lo[1] == '[' else '>'} {num(lo[0])}"
        if hi:
            return f" {'<=' if hi[1] == ']' else '<'} {num(hi[0])}"
        return ""

    _NOUNS = {int: ("an int", "ints"), float: ("a float", "floats"), bool: ("a bool", "bools"),
              str: ("a string", "strings"), PATH: ("a path", "paths")}

    def describe(self) -> str:
        """What the field accepts, for error messages: 'an int >= 1', 'a float in (0, 1]'."""
        if self.choices is not None:
            base = "one of " + ", ".join(show(c) for c in self.choices)
        elif self.type is list:
            n = f"{self.length} " if self.length is not None else ""
            base = f"a list of {n}{self._NOUNS[self.item][1]}{self._range()}"
        else:
            base = self._NOUNS[self.type][0] + self._range()
            if self.type is bool:
                base += " (true or false)"
        alts = [show(x) for x in self.literals]
        if self.nullable:
            alts.append("null")
        if alts:
            base = (f"{base}, " if len(alts) > 1 else f"{base} or ") + \
                ", ".join(alts[:-1]) + (" or " if len(alts) > 1 else "") + alts[-1]
        return base

    def type_markdown(self) -> str:
        """Short type for the README table: 'int >= 1', 'enum: a \\| b', 'float \\| null'."""
        if self.choices is not None:
            text = "enum: " + " \\| ".join(f"`{c}`" for c in self.choices)
        elif self.type is list:
            n = f"[{self.length}]" if self.length is not None else "[]"
            text = f"list{n} of {self._NOUNS[self.item][1]}{self._range()}"
        else:
            text = {int: "int", float: "float", bool: "bool", str: "str", PATH: "path"}[self.type]
            text += self._range()
        alts = [f"`{x}`" for x in self.literals] + (["null"] if self.nullable else [])
        return " \\| ".join([text, *alts])

    # -- validation --------------------------------------------------------------------
    def _scalar(self, value, type_):
        if type_ is bool:
            ok = isinstance(value, bool)
        elif type_ is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif type_ is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value)
            if ok:
                value = float(value)
        else:  # str, PATH
            ok = isinstance(value, str) and value.strip() != ""
        if not ok:
            raise Invalid()
        if type_ in (int, float):
            if ((self.min is not None and value < self.min)
                    or (self.max is not None and value > self.max)
                    or (self.gt is not None and value <= self.gt)
                    or (self.lt is not None and value >= self.lt)):
                raise Invalid()
        return value

    def coerce(self, value):
        """Return the normalised value, or raise Invalid with a message."""
        if value is None and self.nullable:
            return None
        if isinstance(value, str) and value in self.literals:
            return value
        try:
            if self.type is list:
                if not isinstance(value, list) or (
                        self.length is not None and len(value) != self.length):
                    raise Invalid()
                out = [self._scalar(v, self.item) for v in value]
            else:
                out = self._scalar(value, self.type)
            if self.choices is not None and out not in self.choices:
                raise Invalid()
        except Invalid:
            msg = f"expected {self.describe()}, got {show(value)}"
            if self.choices is not None and isinstance(value, str):
                close = difflib.get_close_matches(value, [str(c) for c in self.choices], n=1)
                if close:
                    msg += f" (did you mean {show(close[0])}?)"
            raise Invalid(msg) from None
        return out



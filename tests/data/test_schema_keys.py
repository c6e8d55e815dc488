"""Every key the data loaders read is a schema key, and every schema data key is read.

`load_dataset` is run for each `data.source` with its section wrapped in a recorder
and the source loaders replaced by stubs that keep their keyword arguments: a key the
schema does not declare fails on reading, a declared key no source reads is dead, and
a section passed on with `**` must match the real loader's signature.
"""

import inspect
from collections.abc import Mapping

import pytest

from sgma_keras import config as config_lib
from sgma_keras.config_validation import iter_fields
from sgma_keras.data import loader
from sgma_keras.registry import SOURCES

LOADERS = {  # source -> (module, function)
    "builtin": ("sgma_keras.data.builtin", "make_builtin_dataset"),
    "proposed_split": ("sgma_keras.data.proposed_split", "load_proposed_split"),
    "cub_raw": ("sgma_keras.data.cub_raw", "load_cub_raw"),
    "awa2_raw": ("sgma_keras.data.awa2_raw", "load_awa2_raw"),
    "flowers_raw": ("sgma_keras.data.flowers_raw", "load_flowers_raw"),
    "tfds": ("sgma_keras.data.tfds_source", "load_tfds"),
}
# Data keys the workflow reads, not the loaders (for the images of every split).
READ_ELSEWHERE = {"data.bad_images": "sgma_keras.workflow (pipelines, predictions)",
                  "data.check_images": "sgma_keras.workflow.training (every split up front)"}


class Recorder(dict):
    """A resolved section that notes each key read and refuses keys it lacks."""

    def __init__(self, values, prefix, seen):
        super().__init__({k: Recorder(v, f"{prefix}{k}.", seen) if isinstance(v, Mapping)
                          else v for k, v in values.items()})
        self.prefix, self.seen = prefix, seen

    def __getitem__(self, key):
        if key not in self:
            raise AssertionError(f"loader read undeclared key {self.prefix}{key}")
        value = super().__getitem__(key)
        if not isinstance(value, Recorder):
            self.seen.add(self.prefix + key)
        return value

    def get(self, key, default=None):
        return self[key]

    def items(self):
        return [(k, self[k]) for k in self]

    # With __iter__ overridden, `dict(section)` and `**section` take the slow path
    # through keys() and __getitem__ instead of copying the dict unseen.
    def __iter__(self):
        return iter(list(super().keys()))

    def keys(self):
        return list(super().keys())


class _Data:
    name = ""
    semantics = [[1.0]]


def _run(source, monkeypatch):
    import importlib

    seen, calls = set(), {}
    raw = {"source": source}
    for key in SOURCES.get(source).requires:  # each path the source requires, set
        *sections, leaf = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = f"/{leaf}"
    resolved = config_lib.resolve_section("data", raw)
    monkeypatch.setattr(loader, "resolve_section",
                        lambda name, cfg: Recorder(resolved, "data.", seen))
    module_name, function = LOADERS[source]
    module = importlib.import_module(module_name)

    def stub(*args, **kwargs):
        calls["args"], calls["kwargs"] = args, kwargs
        return _Data()

    monkeypatch.setattr(loader, "l2_normalize_rows", lambda m: m)
    monkeypatch.setattr(module, function, stub)
    loader.load_dataset(raw)
    return seen, calls


def test_every_registered_source_is_checked_here():
    assert sorted(LOADERS) == sorted(SOURCES.names())


@pytest.mark.parametrize("source", sorted(LOADERS))
def test_loader_reads_only_schema_keys_and_calls_its_loader_as_declared(source, monkeypatch):
    import importlib

    module_name, function = LOADERS[source]
    real = getattr(importlib.import_module(module_name), function)
    seen, calls = _run(source, monkeypatch)
    params = inspect.signature(real).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in calls["kwargs"] if k not in params and not takes_any]
    assert not unknown, f"{source}: {function} takes no argument(s) {unknown}"
    assert seen >= {"data.source", "data.seed"}


def test_every_schema_data_key_is_read(monkeypatch):
    read = set()
    for source in LOADERS:
        with monkeypatch.context() as m:
            read |= _run(source, m)[0]
    declared = {key for key, _ in iter_fields(config_lib.SCHEMA["data"], "data.")}
    dead = declared - read - set(READ_ELSEWHERE)
    assert not dead, f"schema data keys no loader reads: {sorted(dead)}"

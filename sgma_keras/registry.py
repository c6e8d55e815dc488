"""Registries of data sources and backbones: each name is declared here once.

The config schema reads its allowed values (`data.source`, `model.backbone`) and the
facts its checks need (which paths a source requires, how many channels a backbone's
features have) from these registries; `load_dataset` and `make_backbone` look the name
up and call what it names. Adding a source or a backbone is one registration::

    from sgma_keras.registry import register_backbone, register_source

    @register_source("my_set", requires=("root",))
    def load_my_set(cfg):  # the resolved "data" section -> ZeroShotData
        ...

    register_backbone("my_cnn", "my_package.nets:my_cnn", channels=256)

A registration names its function directly or as "module:function", imported on first
use: this module imports no framework, so validating a config stays light.
"""

import importlib
import types

__all__ = [
    "Registry",
    "SOURCES",
    "BACKBONES",
    "register_source",
    "register_backbone",
]


class Registry:
    """Names -> entries: a target (a callable, or "module:function") and facts about it.

    Args:
      kind: what the names are, for messages ("data source").
      facts: the facts an entry may state, with their defaults.
    """

    def __init__(self, kind, facts):
        self.kind = kind
        self.facts = dict(facts)
        self._entries = {}

    def register(self, name, target=None, **facts):
        """Registers `name`; without `target`, returns a decorator that registers the
        decorated function (and returns it unchanged)."""
        if target is None:
            def decorate(function):
                self.register(name, function, **facts)
                return function
            return decorate
        unknown = sorted(set(facts) - set(self.facts))
        if unknown:
            raise TypeError(f"{self.kind} {name!r}: unknown fact(s) {unknown}; "
                            f"expected some of {sorted(self.facts)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name is a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not callable(target) and not (isinstance(target, str) and ":" in target):
            raise TypeError(f"{self.kind} {name!r}: target must be a callable or "
                            f"'module:function', got {target!r}")
        self._entries[name] = types.SimpleNamespace(
            name=name, target=target, **{**self.facts, **facts})
        return target

    def unregister(self, name):
        """Removes `name` (for tests and plugins that registered it)."""
        del self._entries[name]

    def names(self):
        """The registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def get(self, name):
        """The entry of `name`; ValueError naming the choices if there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"Unknown {self.kind} {name!r}; expected one of "
                             f"{', '.join(self._entries)}.") from None

    def resolve(self, name):
        """The callable registered as `name` (importing its module if named by path)."""
        entry = self.get(name)
        if callable(entry.target):
            return entry.target
        module, _, attr = entry.target.partition(":")
        return getattr(importlib.import_module(module), attr)


SOURCES = Registry("data source", {
    # keys of the "data" section that must be set for this source ("root",
    # "tfds.semantics_file"); the config reports each one missing
    "requires": (),
    # the sub-section of "data" holding this source's own options ("builtin"); its
    # paths are checked only for the sources that read it
    "section": None,
    # whether `data.semantics` applies (`att` vectors are then unit-L2-normalised)
    "semantics": True,
})

BACKBONES = Registry("backbone", {
    # channels of the default feature map: an int, or a function of the resolved
    # "model.backbone" section; None: unknown until built
    "channels": None,
    # how the channel count comes about, for messages; `{key}` expands to
    # model.backbone.key
    "channels_note": "at its default feature layer",
    # whether model.backbone.feature_layer picks another layer to tap
    "tappable": True,
    # whether weights="imagenet" is available
    "imagenet": True,
})


def register_source(name, loader=None, *, requires=(), section=None, semantics=True):
    """Registers a data source: `loader(cfg)` maps the resolved "data" section to a
    `ZeroShotData` (`load_dataset` then applies `data.name` and
    `data.normalize_semantics`). Usable as a decorator when `loader` is omitted."""
    return SOURCES.register(name, loader, requires=tuple(requires), section=section,
                            semantics=semantics)


def register_backbone(name, builder=None, **facts):
    """Registers a backbone: `builder(input_size, *, weights, feature_layer, tiny_width,
    model_name)` returns a `keras.Model` from (B, S, S, 3) pixels in [0, 255] to
    (B, h, w, C) features; `weights` is None, "imagenet" or an existing file.
    Facts: `channels`, `channels_note`, `tappable`, `imagenet` (see `BACKBONES`).
    Usable as a decorator when `builder` is omitted."""
    return BACKBONES.register(name, builder, **facts)


# The built-in sources; loaders in sgma_keras.data.loader, loaded on first use.
register_source("builtin", "sgma_keras.data.loader:from_builtin", section="builtin",
                semantics=False)
register_source("proposed_split", "sgma_keras.data.loader:from_proposed_split",
                requires=("root", "split_dir"))
register_source("cub_raw", "sgma_keras.data.loader:from_cub_raw", requires=("root",),
                section="raw")
register_source("awa2_raw", "sgma_keras.data.loader:from_awa2_raw", requires=("root",),
                section="raw")
register_source("flowers_raw", "sgma_keras.data.loader:from_flowers_raw",
                requires=("root", "flowers.semantics_file"), section="flowers")
register_source("tfds", "sgma_keras.data.loader:from_tfds",
                requires=("tfds.semantics_file",), section="tfds")

# The built-in backbones; builders in sgma_keras.backbones, loaded on first use.
register_backbone("vgg19", "sgma_keras.backbones:vgg19", channels=512)
register_backbone("resnet50", "sgma_keras.backbones:resnet50", channels=2048)
register_backbone("resnet101", "sgma_keras.backbones:resnet101", channels=2048)
register_backbone("tiny", "sgma_keras.backbones:tiny",
                  channels=lambda backbone: 4 * backbone["tiny_width"],
                  channels_note="4 x model.backbone.tiny_width={tiny_width}", tappable=False,
                  imagenet=False)

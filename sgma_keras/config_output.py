"""What a resolved config is written as: a run folder's `config.json` and
`versions.json`, and the schema as Markdown (docs/CONFIG.md).

`sgma_keras.config` holds the schema and makes a resolved config; this module only
writes it out. Import-light: Keras is imported only to name its version.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Mapping

from sgma_keras.atomic_io import write_text_atomic
from sgma_keras.config import SCHEMA

__all__ = ["config_to_json", "save_resolved_config", "schema_markdown", "reference_markdown"]


def config_to_json(cfg: Mapping) -> str:
    """The config as indented JSON (schema order), ending in a newline."""
    return json.dumps(cfg, indent=2, allow_nan=False) + "\n"


def _versions() -> dict:
    import keras  # lazy: checking a config loads no framework

    from . import __version__

    backend = keras.backend.backend()
    versions = {
        "sgma_keras": __version__,
        "keras": keras.__version__,
        "backend": backend,
        "python": platform.python_version(),
    }
    mod = sys.modules.get(backend)
    if mod is not None and getattr(mod, "__version__", None):
        versions[f"{backend}_version"] = str(mod.__version__)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        versions["numpy"] = numpy.__version__
    return versions


def save_resolved_config(cfg: Mapping, run_dir: str | os.PathLike) -> str:
    """Write ``config.json`` (the resolved config) and ``versions.json`` into run_dir.

    Each file is written atomically (temp file in run_dir, then os.replace). Returns the
    path of config.json.
    """
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    config_path = os.path.join(run_dir, "config.json")
    write_text_atomic(config_path, config_to_json(cfg))
    write_text_atomic(os.path.join(run_dir, "versions.json"),
                      json.dumps(_versions(), indent=2) + "\n")
    return config_path


def schema_markdown(schema: Mapping | None = None) -> str:
    """The schema as a Markdown table: key, type, default, description."""
    schema = SCHEMA if schema is None else schema
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]

    def walk(section, prefix):
        for key, spec in section.items():
            path = f"{prefix}{key}"
            if isinstance(spec, Mapping):
                if getattr(spec, "doc", ""):
                    kind = "section \\| null" if spec.nullable else "section"
                    rows.append(f"| `{path}` | {kind} | | {spec.doc} |")
                walk(spec, path + ".")
                continue
            default = json.dumps(spec.default).replace("|", "\\|")
            doc = spec.doc.replace("|", "\\|")
            rows.append(f"| `{path}` | {spec.type_markdown()} | `{default}` | {doc} |")

    walk(schema, "")
    return "\n".join(rows) + "\n"


def reference_markdown() -> str:
    """docs/CONFIG.md: a header and the schema table (a test keeps the file equal to it)."""
    return (
        "# Configuration reference\n\n"
        "Generated from `sgma_keras/config.py` and, for the model's sections (each the "
        "arguments of the layer it builds), `sgma_keras/arguments.py`, by "
        "`python -m sgma_keras.config --markdown > docs/CONFIG.md`. Keys starting "
        "with `_` are comments. `[paper]` marks the paper's setting, `[choice]` our default "
        "where the paper is silent, `[choice, not the paper's: ...]` a default that departs "
        "from the paper, with the reason. The toy-set numbers are from the option study "
        "on the built-in data (docs/ablation/options.md), not from CUB, AwA2 or FLO.\n\n"
        + schema_markdown()
    )

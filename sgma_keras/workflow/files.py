"""The files and folders a command is given, checked without any framework.

A `.keras` checkpoint is a zip archive whose `config.json` holds the model's constructor
arguments: `read_checkpoint_config` reads them (a missing, unreadable or non-SGMA file
fails with one line naming it) in milliseconds, so the command lines check the file
before they load Keras and a backend. `removing_if_left_empty` takes back the folders a
failed command created.
"""

import contextlib
import json
import os
import zipfile

from sgma_keras.errors import UserError

CHECKPOINTS = "checkpoints"
FINAL = "final.keras"
BEST = "best.keras"


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not match its config/data."""


def default_checkpoint_path(output_dir):
    """`<output_dir>/checkpoints/final.keras`, the model training hands over
    (`best.keras` in a run folder that has no `final.keras`)."""
    final = os.path.join(output_dir, CHECKPOINTS, FINAL)
    best = os.path.join(output_dir, CHECKPOINTS, BEST)
    return best if not os.path.exists(final) and os.path.exists(best) else final


def _neighbours(path):
    """The .keras files beside `path` (when its folder exists), for the message."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        found = sorted(n for n in os.listdir(folder) if n.endswith(".keras"))
    except OSError:
        return ""
    return f"; {folder} holds {', '.join(found)}" if found else ""


def read_checkpoint_config(path, hint=None):
    """The SGMA constructor arguments stored in a `.keras` file, without loading it.

    Args:
        path: the file.
        hint: what the user can do when the file is missing (the command line knows
            which command and option gave the path); None: only the facts.

    Raises:
        CheckpointError: the file is missing, not a `.keras` archive or not an
            SGMA model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"Checkpoint not found: {path!r}{_neighbours(path)}."
                              + (f" {hint}" if hint else ""))
    if os.path.isdir(path):
        raise CheckpointError(
            f"Checkpoint {path!r} is a folder; expected a .keras model file (e.g. "
            f"<output_dir>/{CHECKPOINTS}/{FINAL})."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise CheckpointError(
            f"Checkpoint {path!r} is not a readable .keras model file ({error}). "
            "Weights-only files (.weights.h5) hold no model; use final.keras (or "
            f"best.keras) from the run's {CHECKPOINTS}/ folder."
        ) from None
    if saved.get("class_name") != "SGMA" or not isinstance(saved.get("config"), dict):
        raise CheckpointError(
            f"Checkpoint {path!r} holds a {saved.get('class_name')!r} model, not an "
            "SGMA model."
        )
    _check_dtype_config(saved["config"].get("dtype"), path)
    return saved["config"]


# The one SGMA argument Keras deserializes as an object when loading: only a dtype
# policy of Keras's own may name a class there.
_DTYPE_MODULES = ("keras", "keras.dtype_policies", "keras.src.dtype_policies.dtype_policy")
_DTYPE_CLASSES = ("DTypePolicy", "FloatDTypePolicy")


def _check_dtype_config(dtype, path):
    if dtype is None or isinstance(dtype, str):
        return
    if (isinstance(dtype, dict) and dtype.get("module") in _DTYPE_MODULES
            and dtype.get("class_name") in _DTYPE_CLASSES
            and isinstance(dtype.get("config"), dict)
            and set(dtype["config"]) == {"name"} and isinstance(dtype["config"]["name"], str)):
        return
    named = (f"{dtype.get('module')}.{dtype.get('class_name')}" if isinstance(dtype, dict)
             else type(dtype).__name__)
    raise CheckpointError(
        f"Checkpoint {path!r}: its model's dtype names {named[:80]!r}, not a Keras dtype "
        "policy; refused without loading it (a model file should not name other code)."
    )


@contextlib.contextmanager
def removing_if_left_empty(path):
    """Within it, `path` may be created (with missing parents); if the block fails,
    each of those folders that is still empty is removed again, so a failed command
    leaves no empty folder behind. Folders that existed before are never touched."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    created = []
    folder = path
    while folder and not os.path.exists(folder):
        created.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    try:
        yield path
    except BaseException:
        for folder in created:  # deepest first
            try:
                os.rmdir(folder)
            except OSError:  # not empty (something was written), or gone
                break
        raise

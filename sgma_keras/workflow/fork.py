"""Starting a run from another run's stage: variants that share their warm-up and init.

Two variants that differ only in a later stage (a loss weight of the joint stage, the
class-center head) are compared best from the same start: trained from scratch, each
draws its own initial weights and data order, and that spread lands in their
difference. `fork_run` makes a new run folder for `cfg` whose stages up to `after`
are marked done, holding the source run's weights at that point, so that training it
(`train(cfg)`) runs the remaining stages only:

    train(full_cfg, stop_after="init")                  # the shared start, once per seed
    fork_run(full_cfg["output_dir"], variant_cfg, "init")
    train(variant_cfg)                                  # joint stage and evaluation

The weights move piece by piece (`SGMA`'s built pieces: backbones, attention,
embedding, class-center head, part backbones): a piece both models have gets the source's weights, a
piece only the new model has keeps its seeded initial weights, and a piece only the
source has is dropped. So a variant without the class-center head, without parts
(from the warm-up), or with random boxes (from the warm-up) forks from the same
source; a piece whose weights differ in shape (a cropper without f_CNet for random
boxes) is the variant's change and keeps its own initial weights, named in the log.
"""

import json
import logging
import os

from sgma_keras.errors import UserError
from sgma_keras.model import PIECES

log = logging.getLogger("sgma_keras")


class ForkError(UserError):
    """The source run cannot start the new one (stage not done, other data)."""


# Config sections that must match: the images, classes and splits, the seed (its data
# order and the new pieces' initial weights) and the input geometry.
SHARED_KEYS = ("seed", "data", "input")


def _read_config(run_dir):
    from sgma_keras.config import validate_config
    from sgma_keras.upgrade import upgrade_run_config

    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as handle:
            raw = upgrade_run_config(json.load(handle), path)
    except (OSError, ValueError) as error:
        raise ForkError(f"{path}: cannot read the source run's config ({error}).") from None
    return validate_config(raw, check_paths=False)


def _pieces(model):
    """(name, layer) of a model's built pieces; one per part backbone."""
    for name in PIECES:
        piece = getattr(model, name, None)
        if piece is not None:
            yield name, piece
    backbones = getattr(model, "part_backbones", [])
    for index, piece in enumerate(backbones):
        yield (f"part_backbones[{index}]" if len(backbones) > 1 else "part_backbones"), piece


def copy_pieces(source, target):
    """Copies the weights of every built piece `source` and `target` both have with
    the same weight shapes; a piece the new config changes (random boxes: a cropper
    without f_CNet) keeps its own initial weights.

    Returns (copied, changed): the names of the pieces copied and of those left as
    they were because their weights differ in shape.
    """
    theirs = dict(_pieces(source))
    copied, changed = [], []
    for name, piece in _pieces(target):
        if name not in theirs:
            continue
        weights = theirs[name].get_weights()
        if [tuple(w.shape) for w in weights] != [tuple(v.shape) for v in piece.weights]:
            changed.append(name)
            continue
        piece.set_weights(weights)
        copied.append(name)
    return copied, changed


def fork_run(source_dir, cfg, after):
    """Starts the run of `cfg` (a new `output_dir`) from `source_dir`'s weights after
    its stage `after` (a selection-phase stage: "warmup" or "init").

    Returns the pieces copied. The new folder records `cfg` and marks the stages up
    to `after` done; `train(cfg)` then runs the rest. Raises ForkError when the source
    has not finished `after`, was trained on other data, seed or input, or the new
    folder already holds a run.
    """
    from sgma_keras.workflow.build import build_model, load_data
    from sgma_keras.workflow.checkpoints import load_weights_quietly, save_weights_atomic
    from sgma_keras.workflow.processes import claim_run_folder
    from sgma_keras.workflow.protocol import protocol
    from sgma_keras.workflow.run_folder import RunFolder
    from sgma_keras.workflow.training import STAGES

    names = [stage.name for stage in STAGES]
    if after not in names[:-1]:
        raise ForkError(f"fork after {after!r}: expected one of {names[:-1]} (a stage "
                        "before the one that selects the model).")
    source = RunFolder(source_dir)
    if after not in source.completed():
        raise ForkError(f"{source_dir}: stage {after!r} is not finished there "
                        f"(finished: {source.completed()}); train it first.")
    source_cfg = _read_config(source_dir)
    for key in SHARED_KEYS:
        if source_cfg[key] != cfg[key]:
            raise ForkError(f"{source_dir}: the source run's {key!r} differs from the new "
                            "run's; a fork shares the data, seed and input.")
    target = RunFolder(cfg["output_dir"])
    if target.completed():
        raise ForkError(f"{cfg['output_dir']}: already holds a run (finished stages "
                        f"{target.completed()}); fork into a new folder.")
    data = load_data(cfg)
    size = cfg["input"]["image_size"]
    seen = protocol(data, cfg["train"], cfg["seed"]).seen_classes
    old = build_model(source_cfg, data, protocol(data, source_cfg["train"],
                                                 source_cfg["seed"]).seen_classes)
    old.build((None, size, size, 3))
    load_weights_quietly(old, source.stage_weights(after))
    new = build_model(cfg, data, seen)
    new.build((None, size, size, 3))
    copied, changed = copy_pieces(old, new)
    with claim_run_folder(cfg) as folder:
        for name in names[:names.index(after) + 1]:
            save_weights_atomic(new, folder.stage_weights(name))
            folder.mark_completed(name)
    log.info("Run %s starts after stage %s of %s (pieces copied: %s%s)", cfg["output_dir"],
             after, source_dir, ", ".join(copied),
             f"; of another shape, kept as built: {', '.join(changed)}" if changed else "")
    return copied

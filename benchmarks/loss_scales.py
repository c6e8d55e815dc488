"""Each SGMA loss term at initialisation, raw and weighted, for a config (issue 14).

Builds the config's model (`training.build_model`) with random backbone weights
(`model.backbone.weights` is forced to null: no download) and random class semantics of
the dataset's size, feeds one batch of random images in [0, 255] at the
config's sizes with random seen-class labels, and prints L_cls, L_cct, L_cpt,
L_div (raw and times their weights) and each term's ratio to the weighted L_cls.
The paper configs should have no term above 10x L_cls.

    python benchmarks/loss_scales.py --config configs/cub.json              # VGG19 at 448
    python benchmarks/loss_scales.py --config configs/cub.json --tiny       # seconds
    python benchmarks/loss_scales.py --config configs/cub.json --set loss.div_reduction=sum

Full size on 2 CPU cores (TensorFlow, batch 2): about a minute (three VGG19s).
Random VGG19 weights differ from the warmed-up backbone the joint stage starts
from; the scale of L_div is set by the maps' level (near sigmoid(0) = 0.5 and
above, here as after the attention pre-fit), not by the backbone's weights.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sgma_keras import losses  # noqa: E402
from sgma_keras.config import load_config  # noqa: E402

# (classes, seen classes, semantic dim) of the datasets the configs name.
DATASETS = {
    "cub": (200, 150, 312),
    "awa2": (50, 40, 85),
    "flo": (102, 82, 1024),
}


class _Data:
    def __init__(self, semantics):
        self.semantics = semantics


def dataset_shape(cfg):
    """(classes, seen, dim) for the config: the named dataset or the built-in set's."""
    if cfg["name"] in DATASETS:
        return DATASETS[cfg["name"]]
    builtin = cfg["data"]["builtin"]
    return builtin["num_classes"], builtin["num_classes"] - builtin["num_unseen"], 16


def measure(cfg, batch=2, seed=0):
    """Dict of raw terms, weights and the weighted terms at initialisation."""
    from sgma_keras.workflow.build import build_model

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    classes, seen, dim = dataset_shape(cfg)
    # Training classes: the seen classes less the validation classes (fit_classes "train").
    if cfg["train"]["fit_classes"] == "train":
        seen = max(2, round(seen * (1 - cfg["data"]["val_fraction"])))
    phi = rng.standard_normal((classes, dim))
    phi /= np.linalg.norm(phi, axis=1, keepdims=True)
    seen_classes = np.sort(rng.choice(classes, seen, replace=False))
    model = build_model(cfg, _Data(phi.astype("float32")), seen_classes)
    size = cfg["input"]["image_size"]
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.choice(seen_classes, batch).astype("int32")
    start = time.perf_counter()
    out = model(images, training=False)
    loss = cfg["loss"]
    raw = {"L_cls": losses.embedding_softmax_loss(labels, out["embedding_scores"], model.seen_classes)}
    weights = {"L_cls": loss["cls_weight"]}
    if "latent" in out:
        index = losses.seen_index(keras.ops.convert_to_tensor(labels), model.seen_classes)
        raw["L_cct"] = losses.class_center_triplet_loss(
            index, out["latent"], model.center_head.normalized_centers(), loss["cct_margin"])
        weights["L_cct"] = loss["cct_weight"]
    if "attention_maps" in out:
        maps = out["attention_maps"]
        raw["L_cpt"] = losses.compactness_loss(maps, loss["cpt_sigma"])
        raw["L_div"] = losses.diversity_loss(maps, loss["div_margin"], loss["div_reduction"])
        weights.update(L_cpt=loss["cpt_weight"], L_div=loss["div_weight"])
        raw_maps = keras.ops.convert_to_numpy(maps)
        map_info = dict(map_shape=list(raw_maps.shape[1:]), map_mean=float(raw_maps.mean()))
    else:
        map_info = {}
    raw = {k: float(keras.ops.convert_to_numpy(v)) for k, v in raw.items()}
    weighted = {k: raw[k] * weights[k] for k in raw}
    return dict(raw=raw, weights=weights, weighted=weighted, seconds=time.perf_counter() - start,
                seen_classes=int(seen), batch=batch, **map_info)


def table(result):
    cls = result["weighted"]["L_cls"]
    lines = ["| term | raw | weight | weighted | weighted / L_cls |", "|---|---|---|---|---|"]
    for name in ("L_cls", "L_cct", "L_cpt", "L_div"):
        if name in result["raw"]:
            w = result["weighted"][name]
            lines.append(f"| {name} | {result['raw'][name]:.4g} | {result['weights'][name]:g} "
                         f"| {w:.4g} | {w / cls:.3g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (repeatable)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny backbone at a quarter of the input sizes (a quick CPU run)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    overrides = ["model.backbone.weights=null", *args.set]
    if args.tiny:
        probe = load_config(args.config, overrides, check_paths=False)
        image = probe["input"]["image_size"]
        local = probe["model"]["cropper"]["output_size"]
        overrides = ["model.backbone.name=tiny", "input.global_size=null",
                     f"input.image_size={max(32, image // 4)}",
                     f"model.cropper.output_size={max(16, local // 4)}", *overrides]
    cfg = load_config(args.config, overrides, check_paths=False)
    result = measure(cfg, args.batch, args.seed)
    print(f"{args.config} ({keras.backend.backend()}, backbone {cfg['model']['backbone']}, "
          f"image {cfg['input']['image_size']}, batch {args.batch}, "
          f"{result['seen_classes']} training classes, maps {result.get('map_shape')} "
          f"mean {result.get('map_mean', float('nan')):.3f}, div_reduction "
          f"{cfg['loss']['div_reduction']}; forward {result['seconds']:.1f} s)")
    print(table(result))
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

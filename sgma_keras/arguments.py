"""The arguments of the model and its layers, each declared once: type, default, range, doc.

A layer validates its arguments against its declaration (`PART_CROPPER.check(locals())`
in `PartCropper.__init__`), and the config schema's `model` sections *are* these
declarations: `model.cropper` holds exactly `PartCropper`'s arguments, under the same
names, with these defaults and docs. So a bad config fails before anything is built,
every problem listed by key path, with the very rule the layer applies.

Adding a model option is one argument of one layer (its signature, what it does) and
one `Field` here, whose doc line is the config reference's (docs/CONFIG.md).

Framework-free: the config is checked without loading Keras.
"""

from __future__ import annotations

from typing import Mapping

from sgma_keras.fields import PATH, Field, Invalid, num
from sgma_keras.registry import BACKBONES

__all__ = [
    "Arguments",
    "BACKBONE",
    "MULTI_ATTENTION",
    "PART_CROPPER",
    "SEMANTIC_EMBEDDING",
    "CLASS_CENTER",
    "LOSS",
    "MODEL",
    "SECTIONS",
    "BOX_SOURCES",
    "MASK_AT",
    "ANCHORS",
    "STEEPNESS_UNITS",
    "DIV_REDUCTIONS",
    "crop_fits_image",
    "global_view_divides",
]


class Arguments:
    """The declared arguments of one constructor.

    Args:
      owner: the constructor's name, for messages ("PartCropper").
      fields: argument name -> `Field`.
      rules: (argument names, function of their values returning None or a message);
        run once every argument they read is valid.
      model_sets: arguments the model sets itself (the part count, the seed): they
        are checked like the others but are no key of the config section.
    """

    def __init__(self, owner: str, fields: Mapping[str, Field], rules=(),
                 model_sets=()):
        self.owner = owner
        self.fields = dict(fields)
        self.rules = [(tuple(keys), fn) for keys, fn in rules]
        self.model_sets = tuple(model_sets)

    @property
    def names(self) -> tuple:
        return tuple(self.fields)

    def section(self) -> dict:
        """The config section: the fields the config sets."""
        return {k: f for k, f in self.fields.items() if k not in self.model_sets}

    def defaults(self) -> dict:
        return {k: f.default for k, f in self.fields.items()}

    def problems(self, values: Mapping, prefix: str = "") -> tuple[dict, list[str]]:
        """(coerced values, ["<prefix><arg>: message", ...]) of the declared arguments
        in `values` (others are ignored); rules run on the valid ones."""
        out, errors, bad = {}, [], set()
        for name, field in self.fields.items():
            if name not in values:
                continue
            value = values[name]
            if hasattr(value, "item") and not isinstance(value, (list, tuple)):
                value = value.item()  # a NumPy scalar
            try:
                out[name] = field.coerce(value)
            except Invalid as error:
                errors.append(f"{prefix}{name}: {error}")
                bad.add(name)
        for keys, rule in self.rules:
            if all(k in out for k in keys):
                message = rule(*(out[k] for k in keys))
                if message:
                    errors.append(f"{prefix}{message}")
        return out, errors

    def check(self, values: Mapping) -> dict:
        """The coerced declared arguments of `values` (e.g. a constructor's `locals()`);
        ValueError naming every problem."""
        out, errors = self.problems(values)
        if errors:
            raise ValueError(f"{self.owner}: " + "; ".join(errors) + ".")
        return out


def _rule(*keys):
    def decorate(fn):
        return keys, fn
    return decorate


# --- choice lists: one place each -------------------------------------------------------

BOX_SOURCES = ("attention", "random")
MASK_AT = ("margin", "input_pixels", "sample_points")
ANCHORS = ("peak", "cnet")
STEEPNESS_UNITS = ("pixel", "relative")
DIV_REDUCTIONS = ("sum", "mean")


# --- rules shared with a layer's build or the model ------------------------------------

def crop_fits_image(output_size, image_size):
    """None, or why parts of `output_size` px cannot be sampled from `image_size` px."""
    if image_size is not None and output_size > image_size:
        return (f"output_size: the part crop ({output_size} px) must not exceed the "
                f"image side ({image_size} px)")
    return None


def global_view_divides(global_size, image_size):
    """None, or why `global_size` is no exact average pooling of `image_size`."""
    if global_size is not None and image_size % global_size:
        return (f"global_size: must divide image_size ({image_size}) so the global view "
                f"is an exact average pooling, got {global_size}")
    return None


# --- backbone: the arguments of `sgma_keras.backbones.make_backbone` --------------------

@_rule("name", "weights")
def _imagenet_weights(name, weights):
    if weights == "imagenet" and not BACKBONES.get(name).imagenet:
        return (f"weights: the {name} backbone has no ImageNet weights; set weights to "
                "null or a weights file")


BACKBONE = Arguments("make_backbone", {
    "name": Field(str, "vgg19", choices=BACKBONES.names, architecture=True,
                  doc="CNN of every branch [paper: vgg19]; `tiny`: small scratch CNN for "
                      "demos and tests"),
    "weights": Field(PATH, "imagenet", nullable=True, literals=("imagenet",),
                     exists="file",
                     doc="initial weights: `imagenet`, null (random) or a weights file "
                         "[choice: imagenet, fine-tuned]"),
    "feature_layer": Field(str, None, architecture=True,
                           doc="layer giving the feature map F; null: the backbone's last "
                               "conv block before pooling (vgg19: block5_conv4) [choice]"),
    "tiny_width": Field(int, 32, min=4, architecture=True,
                        doc="base channel width of the tiny backbone"),
}, rules=[_imagenet_weights])


# --- the layers -------------------------------------------------------------------------

MULTI_ATTENTION = Arguments("MultiAttention", {
    "num_parts": Field(int, 2, min=1, doc="K, the number of attention maps"),
    "reduction": Field(int, 16, min=1, architecture=True,
                       doc="channel reduction r of the attention FC layers (hidden width "
                           "C/r)"),
    "normalize": Field(bool, True, architecture=True,
                       doc="divide each attention map's weighted channel sum by the sum of "
                           "its weights [choice, not the paper's: its plain weighted sum "
                           "(false) of 512 ReLU channels saturates the sigmoid at 1, leaving "
                           "the map no gradient]"),
}, model_sets=("num_parts",))


@_rule("min_side", "max_side")
def _side_order(min_side, max_side):
    if min_side > max_side:
        return f"min_side: must be <= max_side, got {num(min_side)} > {num(max_side)}"


PART_CROPPER = Arguments("PartCropper", {
    "num_parts": Field(int, 2, min=1, doc="K, the number of parts"),
    "output_size": Field(int, 224, min=8, architecture=True,
                         doc="side of the zoomed part images in pixels, at most "
                             "input.image_size [paper: 224]"),
    "hidden_units": Field(int, 128, min=1, architecture=True,
                          doc="hidden units of f_CNet (map -> box) [choice: the paper states "
                              "two dense layers, not their width]"),
    "min_side": Field(float, 0.25, gt=0, max=1, architecture=True,
                      doc="smallest part box side, share of the image side [choice]"),
    "max_side": Field(float, 0.6, gt=0, max=1, architecture=True,
                      doc="largest part box side, share of the image side [choice]"),
    "steepness": Field(float, 10.0, gt=0, architecture=True,
                       doc="k of the boxcar h(z) = 1/(1+exp(-kz)), z in input-image pixels "
                           "[paper: 10]; with mask_at=margin an edge sharper than one "
                           "output sample is widened to one sample"),
    "peak_temperature": Field(float, 0.05, gt=0, architecture=True,
                              doc="softmax temperature locating attention peaks (the box "
                                  "anchor of anchor `peak`) [choice: not in the paper]"),
    "box_source": Field(str, "attention", choices=BOX_SOURCES, architecture=True,
                        doc="part boxes from the attention subnet, or random boxes "
                            "(ablation)"),
    "seed": Field(int, None, min=0, doc="seed of the random boxes"),
    "steepness_unit": Field(str, "pixel", choices=STEEPNESS_UNITS,
                            doc="unit of z in the boxcar h(kz): input-image pixels (k=10: a "
                                "0.2 px edge) or the image side (k=10: an edge a tenth of "
                                "the image) [choice: the paper does not state it; "
                                "`relative` scored -1.9 +/- 6.7 on the built-in toy set]"),
    "peak_gradient_temperature": Field(float, None, gt=0,
                                       doc="straight-through soft-argmax: the box sits on "
                                           "the sharp peak, its gradient to the map is that "
                                           "of softmax(M / this); null: off, the gradient "
                                           "of the sharp peak itself [choice: not in the "
                                           "paper; off scored +10.0 +/- 3.1 on the built-in "
                                           "toy set, docs/ablation/options.md]"),
    "mask_at": Field(str, "margin", choices=MASK_AT,
                     doc="where the boxcar mask V is evaluated. margin: at the sample points "
                         "of a grid that extends `margin` past the box, each sample the "
                         "mean of the image over its cell, V's edge at least one output "
                         "sample wide: the box gradient is resolved at sub-pixel scale and "
                         "sees just outside the box (benchmarks/crop_gradient.py). "
                         "input_pixels: at the input pixels the sampler reads (a 0.2 px "
                         "edge: the box gradient flips as the box moves by a fraction of a "
                         "pixel). sample_points: at the sample points of a grid spanning "
                         "the box (files saved before this key existed) [choice]"),
    "anchor": Field(str, "peak", choices=ANCHORS,
                    doc="box centre: the soft peak of its map moved by f_CNet's offset, or "
                        "f_CNet's prediction from the map alone (the paper) [choice, not "
                        "the paper's: on the built-in toy set an untrained f_CNet put every "
                        "box in one place, localisation 14% at init against 45%, "
                        "docs/ablation/options.md]"),
    "margin": Field(float, 0.125, min=0, max=1,
                    doc="mask_at=margin: the grid's margin past each box edge, share of the "
                        "box side (0.125: the box fills the central 80% of the part image) "
                        "[choice]"),
}, rules=[_side_order], model_sets=("num_parts", "seed"))


SEMANTIC_EMBEDDING = Arguments("SemanticEmbedding", {
    "normalize": Field(bool, False, architecture=True,
                       doc="L2-normalise theta and phi, scaled score (NormFace) "
                           "[choice: off]"),
    "scale": Field(float, 16.0, gt=0, architecture=True,
                   doc="score scale when normalize is on"),
    "learn_scale": Field(bool, True, architecture=True,
                         doc="learn that scale (initial value: scale)"),
})


CLASS_CENTER = Arguments("ClassCenterHead", {
    "latent_dim": Field(int, 256, min=1, architecture=True,
                        doc="class-center latent space dimension"),
    "ridge_lambda": Field(float, 1.0, min=0,
                          doc="ridge lambda building unseen centres from seen ones"),
    "center_stddev": Field(float, 1.0, gt=0,
                           doc="standard deviation of the learned centres' initial values; "
                               "the centres are L2-normalised where used, so it sets how "
                               "fast they move (larger: slower) [choice]"),
})


# --- the model's own settings (`SGMA` and its builder, `sgma_keras.model.make_sgma`) ----

MODEL = Arguments("SGMA", {
    "image_size": Field(int, 448, min=32, architecture=True,
                        doc="global input side in pixels [paper: 448]"),
    "global_size": Field(int, None, min=8, architecture=True,
                         doc="side of the global branch's view, the image average-pooled "
                             "by an integer factor; null: image_size [paper: 448]; parts "
                             "are always sampled from the full image [choice]"),
    "num_parts": Field(int, 2, min=0, architecture=True,
                       doc="K, the number of attention parts (each a crop through "
                           "model.cropper), at most the backbone's feature channels; 0: "
                           "the global branch alone [paper: 2]"),
    "share_part_backbones": Field(bool, False, architecture=True,
                                  doc="share backbones between branches instead of one per "
                                      "branch [paper: separate]"),
    "separate_attention_backbone": Field(bool, False, architecture=True,
                                         doc="own backbone for the attention subnet instead "
                                             "of the global branch's [choice]"),
    "map_losses_reach_backbone": Field(bool, False,
                                       doc="false: stop the gradient of the feature map into "
                                           "the attention subnet, so L_cpt + L_div (and the "
                                           "boxes' path) train it alone, not the backbone "
                                           "[choice, not the paper's, which trains "
                                           "everything jointly: +9.7 +/- 4.9 points of "
                                           "validation score on the built-in toy set, "
                                           "docs/ablation/options.md]"),
    "gamma_cc": Field(float, None, min=0,
                      doc="weight of the class-center head in the fused score, each head "
                          "divided by its spread on the validation images; null: chosen on "
                          "the validation classes from 0, 0.25, 0.5, 1, 2, 4, 16 (training "
                          "runs at 1 on unscaled heads) [choice]"),
}, rules=[(("global_size", "image_size"), global_view_divides)])


LOSS = Arguments("SGMA loss", {
    "cpt_weight": Field(float, 1.0, min=0, doc="weight of L_cpt (compactness), per part "
                                               "[choice]"),
    "div_weight": Field(float, 1.0, min=0,
                        doc="lambda: weight of L_div (diversity) [choice: the paper tuned "
                            "lambda, alpha and beta on validation and does not state them]"),
    "cls_weight": Field(float, 1.0, min=0, doc="alpha: weight of L_cls (softmax) [choice]"),
    "cct_weight": Field(float, 1.0, min=0,
                        doc="beta: weight of L_cct (class-center triplet) [choice]"),
    "div_margin": Field(float, 0.2, min=0, doc="margin of L_div [paper: 0.2]"),
    "cct_margin": Field(float, 0.8, min=0, doc="margin of L_cct [paper: 0.8]"),
    "cpt_sigma": Field(float, 1.0, gt=0,
                       doc="width of L_cpt's ideal Gaussian map, in feature-map cells "
                           "[choice]"),
    "div_reduction": Field(str, "sum", choices=DIV_REDUCTIONS,
                           doc="L_div over map positions: `sum` [paper] or `mean` (the sum "
                               "divided by h*w, independent of the map size)"),
})


# Config section of `model` -> (its arguments, the SGMA argument holding what it builds;
# None: the model keeps the section itself).
SECTIONS: dict[str, tuple[Arguments, str]] = {
    "backbone": (BACKBONE, "backbone"),
    "attention": (MULTI_ATTENTION, "multi_attention"),
    "cropper": (PART_CROPPER, "cropper"),
    "embedding": (SEMANTIC_EMBEDDING, "embedding"),
    "center": (CLASS_CENTER, "center_head"),
}
# Sections that may be null: no such layer (`model.center: null`, no class-center
# branch).
NULLABLE_SECTIONS = ("center",)

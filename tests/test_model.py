"""The SGMA model: it learns, gradients reach the attention and the boxes, it compiles
under XLA and mixed precision, it rejects bad arguments and swaps class semantics."""

import keras
import numpy as np
import pytest

from sgma_keras.backbones import make_backbone
from sgma_keras.model import SGMA
from sgma_keras.semantics import l2_normalize_rows
from tests import helpers as H
from tests.helpers import _seed, gradients, numpy, tiny_sgma  # noqa: F401 (_seed: cheaper reset)


def seen_predictions(scores):
    """Argmax over the seen columns of (B, num_classes) scores, as global class ids."""
    return np.asarray(H.SEEN)[numpy(scores)[:, list(H.SEEN)].argmax(axis=1)]


def assert_finite_history(history, steps):
    for name in ("loss", "loss_cls", "loss_cct", "loss_cpt", "loss_div"):
        values = history.history[name]
        assert len(values) == steps and np.all(np.isfinite(values)), (name, values)


# -- learning --------------------------------------------------------------------------


def test_overfits_one_batch():
    """50 full-batch Adam steps on 8 easy images of 4 seen classes (out of 6).

    Compiled with `jit_compile=True` on TensorFlow (XLA) and JAX, so this is also
    the XLA training test; PyTorch trains with the default (eager) settings.
    """
    x, y = H.easy_batch()
    model = tiny_sgma()
    jit = H.BACKEND in ("tensorflow", "jax")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit if jit else "auto")
    assert model.jit_compile is jit  # torch: "auto" resolves to eager training
    history = model.fit(x, y, batch_size=len(x), epochs=50, shuffle=False, verbose=0)
    assert_finite_history(history, 50)
    loss_cls = history.history["loss_cls"]
    assert loss_cls[-1] <= 0.5 * loss_cls[0], loss_cls
    assert history.history["loss"][-1] < history.history["loss"][0]
    outputs = model(x)  # inference mode: batch-norm moving statistics
    np.testing.assert_array_equal(seen_predictions(outputs["scores"]), y)
    np.testing.assert_array_equal(seen_predictions(outputs["embedding_scores"]), y)


def test_total_loss_gradients_reach_attention_layers_and_boxes():
    """d(total loss) w.r.t. MultiAttention's w1/w2 and the box offsets of f_CNet.

    `cnet_b2` is added to the (t_x, t_y, t_s) logits of every box, so its gradient
    is the gradient of the loss with respect to each box coordinate (through the
    sigmoid), summed over the batch.
    """
    x, y = H.easy_batch()
    model = tiny_sgma()
    attention, cropper = model.multi_attention, model.cropper
    variables = [attention.w1, attention.w2, cropper.cnet_b2]

    def total_loss():
        return model.compute_loss(x, y, model(x, training=True), training=True)

    loss, grads = gradients(total_loss, variables)
    assert np.isfinite(loss) and loss > 0
    for variable, grad in zip(variables, grads):
        assert grad is not None and grad.shape == tuple(variable.shape), variable.path
        assert np.all(np.isfinite(grad)), variable.path
    w1, w2, box = grads
    for part in range(2):
        # (typical magnitudes: 0.05 for the attention weights, 0.03 to 9 for the boxes)
        assert np.abs(w1[part]).max() > 1e-4 and np.abs(w2[part]).max() > 1e-4
        assert np.all(np.abs(box[part]) > 1e-4), box  # t_x, t_y and t_s of each part


# -- compilation and precision ---------------------------------------------------------


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test, and always restores float32."""
    try:
        yield keras.mixed_precision.set_global_policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains(policy, name):
    policy(name)
    x, y = H.easy_batch()
    model = tiny_sgma()
    compute = name.split("_")[1]
    assert model.global_backbone.layers[2].compute_dtype == compute  # the first conv
    assert model.cropper.compute_dtype == "float32"  # boxes stay float32
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    model.compile(optimizer=keras.optimizers.SGD(0.05))  # SGD: a third of Adam's trace time
    history = model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    assert_finite_history(history, 3)
    assert model.embedding.compute_dtype == compute and model.compute_dtype == compute
    # predict(): one compiled forward pass (eager JAX would compile every op anew
    # for the new dtypes).
    outputs = model.predict(x, batch_size=len(x), verbose=0)
    for name in ("scores", "boxes", "attention_maps"):
        assert np.all(np.isfinite(np.asarray(outputs[name], "float32"))), name
    np.testing.assert_array_equal(seen_predictions(outputs["scores"]).shape, (8,))


PART_MODES = {"random": dict(cropper={"box_source": "random"}), "none": dict(num_parts=0)}


@pytest.mark.parametrize("part_mode", sorted(PART_MODES))
def test_other_part_modes_train(part_mode):
    """Random boxes (with one shared part backbone) and the global branch alone."""
    x, y = H.easy_batch()
    model = tiny_sgma(**PART_MODES[part_mode], share_part_backbones=True)
    assert model.multi_attention is None
    before = [numpy(w).copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.05))  # SGD: a third of Adam's trace time
    history = model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    for name in ("loss", "loss_cls", "loss_cct"):
        assert np.all(np.isfinite(history.history[name])), name
    changed = [not np.allclose(a, numpy(w)) for a, w in zip(before, model.trainable_weights)]
    assert sum(changed) > len(changed) // 2
    outputs = model(x)
    assert "attention_maps" not in outputs
    if part_mode == "none":
        assert model.cropper is None and model.part_backbones == [] and "boxes" not in outputs
        assert model.num_branches == 1
    else:
        boxes = numpy(outputs["boxes"])
        assert boxes.shape == (8, 2, 3)
        assert np.all(boxes[..., 0] - boxes[..., 2] / 2 >= -1e-6)
        assert np.all(boxes[..., 0] + boxes[..., 2] / 2 <= 1 + 1e-6)
        assert np.std(boxes[..., 2]) > 0.01  # random, not fixed boxes
        assert model.cropper.weights == []  # no f_CNet: nothing without a gradient


def test_share_part_backbones_builds_one_part_backbone():
    shared = tiny_sgma(share_part_backbones=True)
    separate = tiny_sgma()
    assert len(shared.part_backbones) == 1
    assert shared.part_backbone(0) is shared.part_backbone(1)
    assert len(separate.part_backbones) == 2
    assert separate.part_backbone(0) is not separate.part_backbone(1)
    per_backbone = len(shared.global_backbone.weights)
    assert len(separate.weights) - len(shared.weights) == per_backbone
    # The shared backbone serves both parts: both branches carry features.
    outputs = shared(H.easy_batch()[0])
    assert outputs["scores"].shape == (8, 6)


def test_global_view_is_the_pooled_image_and_parts_sample_the_full_image():
    """`global_size`: the global branch and the attention maps see the image average-
    pooled by image_size // global_size; the parts are cut from the full image."""
    x, y = H.easy_batch()
    model = tiny_sgma(image_size=32, global_size=16)
    assert tuple(model.global_backbone.input.shape[1:3]) == (16, 16)
    pooled = x.reshape(8, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(numpy(model.global_view(x)), pooled, rtol=1e-5, atol=1e-3)
    outputs = model(x)
    assert outputs["attention_maps"].shape == (8, 2, 2, 2)  # the tiny CNN's 1/8 map of 16 px
    crops, boxes = model.crop_parts(x)
    assert crops.shape == (8, 2, H.LOCAL_SIZE, H.LOCAL_SIZE, 3)
    # Parts sample the 32 px image: a full-image box reproduces it at the part size.
    full = model.cropper.crop(x, np.tile(np.array([[[0.5, 0.5, 1.0]]], "float32"), (8, 2, 1)))
    assert numpy(full).std() > 0
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    restored = SGMA.from_config(model.get_config())
    assert restored.global_size == 16 and restored.image_size == 32
    assert tiny_sgma().global_size == H.IMAGE_SIZE  # default: the full image


# -- construction errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(num_parts=-1), r"num_parts: expected an int >= 0, got -1"),
        (dict(backbone={"name": "vgg20"}),
         r"name: expected one of \"vgg19\", .*\"tiny\", got \"vgg20\""),
        (dict(image_size=32, cropper={"output_size": 40}),
         r"output_size: the part crop \(40 px\) must not exceed the image side \(32 px\)"),
        (dict(seen_classes=[0, 2, 6]), r"`seen_classes` must be .* class ids in \[0, 6\)"),
        (dict(seen_classes=[-1, 2]), r"`seen_classes` must be .* class ids in \[0, 6\)"),
        (dict(seen_classes=[]), r"`seen_classes` must be a non-empty list"),
        (dict(cropper={"box_source": "grid"}), r"box_source: expected one of \"attention\""),
        (dict(global_size=12), r"global_size: must divide image_size \(32\)"),
    ],
)
def test_bad_construction_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_sgma(**overrides)


def test_pieces_that_do_not_fit_together_are_refused():
    model = tiny_sgma()
    pieces = dict(global_backbone=model.global_backbone, embedding=model.embedding,
                  seen_classes=list(H.SEEN), image_size=32, cropper=model.cropper,
                  part_backbones=model.part_backbones)
    with pytest.raises(ValueError, match=r"box_source is 'attention': expected multi_attention"):
        SGMA(**pieces)
    with pytest.raises(ValueError, match=r"3 part backbones for 2 parts; expected 1 or 2"):
        SGMA(**{**pieces, "part_backbones": (model.part_backbones * 2)[:3]},
             multi_attention=model.multi_attention)


def test_bad_backbone_weights_and_semantics_width():
    with pytest.raises(ValueError, match=r"name: expected one of \"vgg19\".* got \"resnet18\""):
        make_backbone("resnet18", 32)
    with pytest.raises(ValueError, match=r"the tiny backbone has no ImageNet weights"):
        tiny_sgma(backbone={"weights": "imagenet"})
    model = tiny_sgma(num_parts=0)
    with pytest.raises(ValueError, match=r"has width 5, but the model was built for .* width 8"):
        model.set_class_semantics(np.ones((3, 5), "float32"))
    with pytest.raises(ValueError, match=r"`seen_rows` must have one entry per class \(3\)"):
        model.set_class_semantics(np.ones((3, 8), "float32"), seen_rows=[0, -1])


# -- class semantics -------------------------------------------------------------------


def test_set_class_semantics_without_retraining():
    x, y = H.easy_batch()
    model = tiny_sgma()
    phi = H.class_semantics()
    # Centres far from their initial values, so the transfer weights matter.
    model.center_head.centers.assign(np.random.default_rng(1).normal(size=(4, 8)))
    full = {k: numpy(v) for k, v in model(x).items()}
    loss = float(numpy(model.compute_loss(x, y, model(x), training=False)))

    # Unseen classes only: 2 scores, equal to the unseen columns of the full model.
    model.set_class_semantics(phi[list(H.UNSEEN)])
    unseen = {k: numpy(v) for k, v in model(x).items()}
    assert unseen["scores"].shape == (8, 2)
    for key in ("scores", "embedding_scores", "center_scores"):
        np.testing.assert_allclose(unseen[key], full[key][:, list(H.UNSEEN)], atol=1e-5)
    with pytest.raises(ValueError, match="does not hold every training class"):
        model.compute_loss(x, y, model(x), training=False)

    # Seen and unseen in another order: the same scores, permuted; seen centres
    # are the learned ones (one-hot transfer rows); the loss follows the new ids.
    order = [4, 3, 0, 5, 1, 2]
    model.set_class_semantics(phi[order])
    permuted = {k: numpy(v) for k, v in model(x).items()}
    for key in ("scores", "embedding_scores", "center_scores"):
        np.testing.assert_allclose(permuted[key], full[key][:, order], atol=1e-5)
    transfer = model.center_head.transfer
    for row, cls in enumerate(order):
        if cls in H.SEEN:
            np.testing.assert_array_equal(transfer[row], np.eye(4)[H.SEEN.index(cls)])
    centers = numpy(model.center_head.normalized_centers())
    latent = permuted["latent"]
    for row, cls in enumerate(order):
        if cls in H.SEEN:
            np.testing.assert_allclose(
                permuted["center_scores"][:, row], latent @ centers[H.SEEN.index(cls)], atol=1e-5
            )
    np.testing.assert_array_equal(model.seen_classes, [order.index(c) for c in H.SEEN])
    relabelled = np.array([order.index(c) for c in y])
    new_loss = float(numpy(model.compute_loss(x, relabelled, model(x), training=False)))
    assert new_loss == pytest.approx(loss, rel=1e-5)


def test_set_class_semantics_without_the_center_branch_round_trips():
    """Swapping to unseen classes only, then back, and reloading in between."""
    x, _ = H.easy_batch()
    model = tiny_sgma(num_parts=0, center=None)
    phi = H.class_semantics()
    full = numpy(model(x)["scores"])
    model.set_class_semantics(phi[list(H.UNSEEN)])
    assert model.seen_classes is None
    clone = SGMA.from_config(model.get_config())
    clone.build((None, H.IMAGE_SIZE, H.IMAGE_SIZE, 3))
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(numpy(clone(x)["scores"]), full[:, list(H.UNSEEN)], atol=1e-5)
    order = [5, 1, 0, 4, 3, 2]
    for swapped in (model, clone):
        swapped.set_class_semantics(phi[order])
        np.testing.assert_array_equal(swapped.seen_classes, [order.index(c) for c in H.SEEN])
        np.testing.assert_allclose(numpy(swapped(x)["scores"]), full[:, order], atol=1e-5)


def _raw_attributes():
    """0/1 class attribute vectors (as CUB's or the built-in data's) and their stored
    form under the data loader's default `normalize_semantics` (unit rows)."""
    raw = (np.random.default_rng(3).random((H.NUM_CLASSES, H.SEMANTIC_DIM)) < 0.5)
    raw = raw.astype("float32")
    raw[:, 0] = 1.0  # no empty class
    assert len(np.unique(raw, axis=0)) == H.NUM_CLASSES
    return raw, l2_normalize_rows(raw)


def _outputs(model, x):
    return {k: numpy(v) for k, v in model(x).items()}


@pytest.mark.parametrize("center", [False, True], ids=["no_center", "center"])
def test_classes_added_by_raw_vectors_get_the_training_transform(center):
    """A class added by the raw 0/1 (or 0-100) vector of a class of the model scores as
    that class: the model scales it to unit norm, as the loader did the training ones."""
    x, _ = H.easy_batch()
    raw, stored = _raw_attributes()
    model = tiny_sgma(semantics=stored, semantics_transform="l2", center={} if center else None)
    if center:  # centres far from their initial values, so the transfer matters
        model.center_head.centers.assign(np.random.default_rng(1).normal(size=(4, 8)))
    full = _outputs(model, x)
    seen, unseen = H.SEEN[1], H.UNSEEN[0]
    model.add_classes(np.stack([raw[seen], 100.0 * raw[unseen]]), ["copy seen", "copy unseen"])
    np.testing.assert_array_equal(model.semantics[:H.NUM_CLASSES], stored)  # not redone
    np.testing.assert_allclose(model.semantics[H.NUM_CLASSES:], stored[[seen, unseen]],
                               atol=1e-7)
    out = _outputs(model, x)
    np.testing.assert_allclose(out["scores"][:, :H.NUM_CLASSES], full["scores"], atol=1e-6)
    copies = full["embedding_scores"][:, [seen, unseen]]
    np.testing.assert_allclose(out["embedding_scores"][:, H.NUM_CLASSES:], copies,
                               rtol=1e-5, atol=1e-6)
    # Each copy scores exactly like the class it copies, both heads and fused: the copy
    # of a trained class gets its learned centre, the copy of an unseen one the same
    # ridge transfer. Both are new classes to GZSL (never lowered by calibration).
    for row, copied in ((-2, seen), (-1, unseen)):
        for key in ("scores", "embedding_scores", "center_scores"):
            if key in full:
                np.testing.assert_allclose(out[key][:, row], full[key][:, copied],
                                           rtol=1e-5, atol=1e-6)
    assert model.seen_mask.tolist()[H.NUM_CLASSES:] == [False, False]


def test_set_class_semantics_takes_raw_vectors_and_finds_the_training_classes():
    x, _ = H.easy_batch()
    raw, stored = _raw_attributes()
    model = tiny_sgma(semantics=stored, semantics_transform="l2")
    model.center_head.centers.assign(np.random.default_rng(1).normal(size=(4, 8)))
    full = _outputs(model, x)
    order = [4, 3, 0, 5, 1, 2]
    model.set_class_semantics(100.0 * raw[order])  # 0-100 scale, as CUB's original_att
    np.testing.assert_allclose(model.semantics, stored[order], atol=1e-7)
    np.testing.assert_array_equal(model.seen_classes, [order.index(c) for c in H.SEEN])
    out = _outputs(model, x)
    for key in ("scores", "embedding_scores", "center_scores"):
        np.testing.assert_allclose(out[key], full[key][:, order], rtol=1e-5, atol=1e-6)


def test_gzsl_roles_follow_the_classes_when_the_class_set_changes():
    """Calibration classes (training + validation classes) keep their role by vector in
    a new class set, also at rows past the old class count; an added class, even a
    copy of one of them, is a new (unseen) class."""
    raw, stored = _raw_attributes()
    roles = sorted(H.SEEN + (1,))  # class 1: a validation class
    model = tiny_sgma(semantics=stored, semantics_transform="l2", calibration=0.5,
                      calibration_classes=roles)
    # Class 1 moves to row 6, past the 6 classes the model had.
    vectors = np.concatenate([raw[[4, 3, 0, 5, 2]], np.ones((1, H.SEMANTIC_DIM)), raw[[1]]])
    model.set_class_semantics(vectors, class_names=[f"c{r}" for r in range(7)])
    assert model.calibration_classes.tolist() == [1, 2, 3, 4, 6]
    model.add_classes(raw[[1, 4]], ["copy 1", "copy 4"])
    assert model.calibration_classes.tolist() == [1, 2, 3, 4, 6]
    assert model.gzsl_seen_mask.tolist()[7:] == [False, False]
    np.testing.assert_array_equal(model.seen_classes, [2, 4, 1, 3])


def test_the_semantics_transform_travels_with_the_model():
    raw, stored = _raw_attributes()
    model = tiny_sgma(semantics=stored, semantics_transform="l2", num_parts=0)
    config = model.get_config()
    assert config["semantics_transform"] == "l2"
    assert SGMA.from_config(config).semantics_transform == "l2"
    plain = SGMA.from_config(tiny_sgma(semantics=raw, num_parts=0).get_config())
    assert plain.semantics_transform is None
    plain.add_classes(raw[:1], ["copy"])
    np.testing.assert_array_equal(plain.semantics[-1], raw[0])


def test_semantics_transform_arguments_are_checked():
    raw, _ = _raw_attributes()
    with pytest.raises(ValueError, match=r"row 0 of `semantics` has L2 norm .*expected the "
                                         r"transformed vectors"):
        tiny_sgma(semantics=raw, semantics_transform="l2")
    with pytest.raises(ValueError, match=r"`semantics_transform` must be one of \(None, 'l2'\)"):
        tiny_sgma(semantics_transform="l1")


def test_initialize_attention_groups_and_prefits():
    model = tiny_sgma()
    features = numpy(model.attention_features(H.easy_batch()[0]))
    assert features.shape == (8, 4, 4, 16)
    groups = model.initialize_attention(features, seed=0)
    assert groups.shape == (16,) and set(groups.tolist()) <= {0, 1}
    weights = numpy(model.multi_attention.channel_weights(features))
    indicator = (groups[None, :] == np.arange(2)[:, None]).astype("float32")
    # Ridge fit of +/-3 logits on a handful of images: close to the 0/1 indicator.
    assert np.abs(weights - indicator).mean() < 0.1


def test_copies_start_parts_and_the_attention_backbone_from_the_global_one():
    """Stage 2 needs channel peaks of a seen-class classifier: a separate attention
    backbone starts from the warmed-up global backbone, as the part backbones do."""
    model = tiny_sgma(separate_attention_backbone=True)

    def same(backbone):
        return all(np.array_equal(a, b) for a, b in
                   zip(backbone.get_weights(), model.global_backbone.get_weights()))

    assert not same(model.attention_backbone) and not same(model.part_backbone(1))
    model.copy_global_to_attention()
    model.copy_global_to_parts()
    assert same(model.attention_backbone) and same(model.part_backbone(0))
    assert same(model.part_backbone(1))
    tiny_sgma().copy_global_to_attention()  # no attention backbone: nothing to copy


@pytest.mark.parametrize("reach", [True, False])
def test_map_losses_reach_the_backbone_only_when_asked(reach):
    """`map_losses_reach_backbone=False` stops the feature map's gradient into the
    attention subnet: L_cpt + L_div then train MultiAttention alone."""
    from sgma_keras import losses

    model = tiny_sgma(map_losses_reach_backbone=reach)
    images, _ = H.easy_batch(per_class=1)
    backbone = model.global_backbone.trainable_variables
    attention = model.multi_attention.trainable_variables

    def map_losses():
        maps = model(images, training=True)["attention_maps"]
        return losses.compactness_loss(maps) + losses.diversity_loss(maps)

    _, grads = gradients(map_losses, backbone + attention)
    def largest(gs):  # None: not connected (TensorFlow, torch), i.e. zero
        return max(0.0 if g is None else float(np.abs(g).max()) for g in gs)

    to_backbone, to_attention = largest(grads[: len(backbone)]), largest(grads[len(backbone):])
    assert to_attention > 0
    assert (to_backbone > 0) == reach, to_backbone


def test_box_anchor_cnet_predicts_boxes_without_the_peak():
    """"cnet" (the paper): f_CNet predicts the box from the map alone, so with its
    output layer at zero every box sits at the image centre wherever the peak is;
    "peak" puts it on the peak."""
    from sgma_keras.layers import PartCropper

    maps = np.zeros((1, 4, 4, 1), "float32")
    maps[0, 0, 3, 0] = 1.0
    centres = {}
    for anchor in ("peak", "cnet"):
        cropper = PartCropper(num_parts=1, output_size=8, hidden_units=4, anchor=anchor)
        cropper.build([(1, 32, 32, 3), maps.shape])
        cropper.cnet_w2.assign(np.zeros(cropper.cnet_w2.shape, "float32"))
        centres[anchor] = numpy(cropper.predict_boxes(maps))[0, 0, :2]
    np.testing.assert_allclose(centres["peak"], [3.5 / 4, 0.5 / 4], atol=1e-4)
    np.testing.assert_allclose(centres["cnet"], [0.5, 0.5], atol=1e-6)


def test_fused_score_divides_each_head_by_its_scale_and_saves_them(tmp_path):
    model = tiny_sgma(gamma_cc=3.0, head_scales=(2.0, 0.5))
    x, _ = H.easy_batch()
    out = {k: numpy(v) for k, v in model(x).items()}
    np.testing.assert_allclose(
        out["scores"], out["embedding_scores"] / 2.0 + 3.0 * out["center_scores"] / 0.5,
        rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert again.head_scales == (2.0, 0.5) and again.gamma_cc == 3.0
    np.testing.assert_allclose(numpy(again(x)["scores"]), out["scores"], rtol=1e-5, atol=1e-5)
    # A class's fused score does not depend on which other classes are scored.
    semantics = np.asarray(model.semantics)
    model.set_class_semantics(semantics[list(H.UNSEEN)])
    np.testing.assert_allclose(numpy(model(x)["scores"]), out["scores"][:, list(H.UNSEEN)],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scales", [(0.0, 1.0), (1.0, float("nan")), (1.0,)])
def test_bad_head_scales_are_refused(scales):
    with pytest.raises(ValueError, match="head_scales"):
        tiny_sgma(head_scales=scales)

import keras
import numpy as np
import pytest

from sgma_keras import zero_shot
from sgma_keras.metrics import GZSLAccuracy, PerClassAccuracy, ZSLAccuracy


def _value(x):
    return float(x)


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable.value)


def _results(metric):
    return {k: _value(v) for k, v in metric.result().items()}


def _identity_model(num_classes):
    """A model whose scores are its input, so tests pick the scores."""
    inputs = keras.Input((num_classes,))
    return keras.Model(inputs, keras.layers.Identity()(inputs))


def _compile(model, metrics):
    # Some backends refuse to evaluate without a loss; its value is unused.
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=metrics,
        jit_compile="auto" if keras.backend.backend() == "torch" else True,
    )


# Imbalanced: class 0 has 3 samples (all right), class 1 one (wrong).
# Per-sample accuracy 3/4, per-class mean (1 + 0) / 2.
IMBALANCED_SCORES = np.array(
    [[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0]],
    "float32",
)
IMBALANCED_LABELS = np.array([0, 0, 0, 1])


def test_per_class_mean_differs_from_per_sample_accuracy():
    m = PerClassAccuracy(num_classes=3)
    m.update_state(IMBALANCED_LABELS, IMBALANCED_SCORES)
    assert _value(m.result()) == pytest.approx(0.5)

    per_sample = np.mean(IMBALANCED_SCORES.argmax(axis=1) == IMBALANCED_LABELS)
    assert per_sample == pytest.approx(0.75)


def test_accumulates_across_batches_and_resets():
    m = PerClassAccuracy(num_classes=3)
    # Same data in two batches, labels as (B, 1): same counts.
    m.update_state(IMBALANCED_LABELS[:3, None], IMBALANCED_SCORES[:3])
    m.update_state(IMBALANCED_LABELS[3:, None], IMBALANCED_SCORES[3:])
    np.testing.assert_allclose(_numpy(m.total), [3, 1, 0])
    np.testing.assert_allclose(_numpy(m.correct), [3, 0, 0])
    assert _value(m.result()) == pytest.approx(0.5)
    m.reset_state()
    assert _value(m.result()) == 0.0  # no class has samples yet
    np.testing.assert_allclose(_numpy(m.total), [0, 0, 0])


def test_classes_and_candidates_restrict_samples_and_argmax():
    scores = np.array(
        [[9.0, 2.0, 1.0], [9.0, 1.0, 2.0], [9.0, 2.0, 1.0], [0.0, 0.0, 0.0]],
        "float32",
    )
    labels = np.array([1, 2, 2, 0])
    # Only classes 1, 2 counted; argmax among them ignores the 9s of class 0.
    # Class 1: 1/1; class 2: sample 1 right, sample 2 wrong -> 1/2.
    m = PerClassAccuracy(3, classes=[1, 2], candidates=[1, 2])
    m.update_state(labels, scores)
    assert _value(m.result()) == pytest.approx(0.75)
    # Over all candidates every sample predicts class 0: only sample 3 right.
    m = PerClassAccuracy(3)
    m.update_state(labels, scores)
    assert _value(m.result()) == pytest.approx(1.0 / 3.0)

    zsl = ZSLAccuracy(3, unseen_classes=[1, 2])
    zsl.update_state(labels, scores)
    assert _value(zsl.result()) == pytest.approx(0.75)


def test_sample_weight():
    m = PerClassAccuracy(num_classes=3)
    # Weight 0 on two right class-0 samples: class 0 still 1/1.
    m.update_state(
        IMBALANCED_LABELS, IMBALANCED_SCORES, sample_weight=[0.0, 0.0, 1.0, 1.0]
    )
    np.testing.assert_allclose(_numpy(m.total), [1, 1, 0])
    assert _value(m.result()) == pytest.approx(0.5)


def test_calibration_changes_predictions():
    # Class 0 is seen, 1 unseen; the unseen sample loses by 0.5.
    scores = np.array([[3.0, 0.0], [1.5, 1.0]], "float32")
    labels = np.array([0, 1])
    m = GZSLAccuracy(2, seen_classes=[0], unseen_classes=[1])
    m.update_state(labels, scores)
    assert _results(m) == pytest.approx({"gzsl_u": 0.0, "gzsl_s": 1.0, "gzsl_h": 0.0})

    m = GZSLAccuracy(2, seen_classes=[0], unseen_classes=[1], calibration=1.0)
    m.update_state(labels, scores)
    assert _results(m) == pytest.approx({"gzsl_u": 1.0, "gzsl_s": 1.0, "gzsl_h": 1.0})

    # Too strong a calibration flips the seen sample as well.
    m = GZSLAccuracy(2, seen_classes=[0], unseen_classes=[1], calibration=4.0)
    m.update_state(labels, scores)
    assert _results(m) == pytest.approx({"gzsl_u": 1.0, "gzsl_s": 0.0, "gzsl_h": 0.0})

    pc = PerClassAccuracy(2, calibration=1.0, calibrated_classes=[0])
    pc.update_state(labels, scores)
    assert _value(pc.result()) == pytest.approx(1.0)


def test_gzsl_hand_computed():
    # Seen {0, 1}, unseen {2, 3}; class 4 is neither and must be ignored.
    seen, unseen = [0, 1], [2, 3]
    labels = np.array([0, 0, 1, 2, 2, 2, 3, 4])
    predicted = np.array([0, 2, 1, 2, 2, 0, 1, 4])
    scores = np.eye(5, dtype="float32")[predicted]
    # s = mean(1/2, 1/1) = 0.75 ; u = mean(2/3, 0/1) = 1/3.
    s, u = 0.75, 1.0 / 3.0
    h = 2 * u * s / (u + s)
    m = GZSLAccuracy(5, seen, unseen)
    m.update_state(labels, scores)
    assert _results(m) == pytest.approx({"gzsl_u": u, "gzsl_s": s, "gzsl_h": h})
    # Per-sample accuracy over the same samples would be 4/7, not any of these.


def test_config_round_trip():
    m = GZSLAccuracy(5, seen_classes=[3, 0], unseen_classes=[4], calibration=0.5)
    config = m.get_config()
    assert config["seen_classes"] == [0, 3]
    clone = GZSLAccuracy.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(ZSLAccuracy(5, [1, 2]))
    )
    assert isinstance(restored, ZSLAccuracy)
    assert restored.unseen_classes == [1, 2]
    pc = PerClassAccuracy(
        4,
        classes=[1],
        candidates=[1, 2],
        calibration=2.0,
        calibrated_classes=[2],
        name="pc",
    )
    assert PerClassAccuracy.from_config(pc.get_config()).get_config() == pc.get_config()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="disjoint"):
        GZSLAccuracy(4, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="class ids"):
        ZSLAccuracy(3, [1, 3])


def test_evaluate_flattens_gzsl_and_matches_numpy():
    """A real `evaluate` pass (jit on TF/JAX) over several batches."""
    rng = np.random.default_rng(0)
    num_classes, seen, unseen = 6, [0, 1, 2, 3], [4, 5]
    # Imbalanced labels, scores biased towards the right class.
    labels = rng.choice(num_classes, size=40, p=[0.4, 0.1, 0.1, 0.1, 0.25, 0.05])
    scores = rng.normal(size=(40, num_classes)).astype("float32")
    scores[np.arange(40), labels] += 1.0

    model = _identity_model(num_classes)
    _compile(
        model,
        [
            GZSLAccuracy(num_classes, seen, unseen, calibration=0.3),
            ZSLAccuracy(num_classes, unseen),
            PerClassAccuracy(num_classes, name="acc_all"),
        ],
    )
    logs = model.evaluate(scores, labels, batch_size=16, verbose=0, return_dict=True)

    expected = zero_shot.gzsl_accuracy(scores, labels, seen, unseen, 0.3)
    assert logs["gzsl_u"] == pytest.approx(expected["u"], abs=1e-6)
    assert logs["gzsl_s"] == pytest.approx(expected["s"], abs=1e-6)
    assert logs["gzsl_h"] == pytest.approx(expected["h"], abs=1e-6)
    zsl, _ = zero_shot.zsl_accuracy(scores, labels, unseen)
    assert logs["zsl_acc"] == pytest.approx(zsl, abs=1e-6)
    acc_all, _ = zero_shot.per_class_accuracy(
        scores, labels, range(num_classes), range(num_classes)
    )
    assert logs["acc_all"] == pytest.approx(acc_all, abs=1e-6)
    assert 0.0 < expected["u"] < 1.0 and 0.0 < expected["s"] < 1.0


def test_evaluate_on_multi_output_model():
    # The SGMA model returns a dict; metrics are attached to "scores".
    inputs = keras.Input((3,))
    outputs = {
        "scores": keras.layers.Identity(name="scores")(inputs),
        "boxes": keras.layers.Identity(name="boxes")(inputs),
    }
    model = keras.Model(inputs, outputs)
    model.compile(
        loss={"scores": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        metrics={"scores": [GZSLAccuracy(3, [0], [1, 2]), ZSLAccuracy(3, [1, 2])]},
    )
    x = np.array([[5.0, 1.0, 0.0], [5.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    y = {"scores": np.array([0, 1, 2]), "boxes": x}
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    # Dict results lose the output prefix; scalar ones keep it.
    assert logs["gzsl_u"] == pytest.approx(0.5)
    assert logs["gzsl_s"] == pytest.approx(1.0)
    assert logs["gzsl_h"] == pytest.approx(2.0 / 3.0)
    assert logs["scores_zsl_acc"] == pytest.approx(1.0)

"""The evaluation path (`sgma_keras.zero_shot`, NumPy, float64) and the Keras metrics
(`sgma_keras.metrics`, keras.ops, float32, used during fit) give the same accuracies:
both call the one rule in `zero_shot` (prediction, per-class mean, H)."""

import keras
import numpy as np
import pytest

from sgma_keras import zero_shot
from sgma_keras.metrics import GZSLAccuracy, PerClassAccuracy, ZSLAccuracy

NUM_CLASSES = 9
SEEN = [0, 1, 2, 3, 4]
UNSEEN = [5, 6, 7]  # class 8 is in neither set: its samples are ignored
NO_SAMPLES = (2, 6)  # one seen and one unseen class without any sample
NEVER_PREDICTED = (1, 7)  # classes with samples that never win the argmax


def _data(seed, n=97):
    """Imbalanced labels and scores on a 0.25 grid: exact in float32 and float64
    (after the calibrations used below), with ties, so the tie rule is compared too."""
    rng = np.random.default_rng(seed)
    classes = [c for c in range(NUM_CLASSES) if c not in NO_SAMPLES]
    weights = rng.uniform(0.2, 1.0, size=len(classes))
    labels = rng.choice(classes, size=n, p=weights / weights.sum())
    scores = np.round(rng.normal(size=(n, NUM_CLASSES)) * 4.0) / 4.0
    scores[np.arange(n), labels] += 1.0
    scores[:, SEEN] += 0.5  # the usual bias towards seen classes
    scores[:, list(NEVER_PREDICTED)] = -100.0
    return scores.astype("float32"), labels


def _feed(metric, scores, labels, batch=16):
    for start in range(0, len(labels), batch):
        metric.update_state(labels[start:start + batch], scores[start:start + batch])
    return metric


def _close(metric_value, numpy_value):
    # Identical up to the metric's float32 arithmetic.
    assert float(metric_value) == pytest.approx(numpy_value, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("calibration", [0.0, 0.75, -1.5, -10.0])
def test_gzsl_metric_equals_the_evaluation_path(seed, calibration):
    scores, labels = _data(seed)
    expected = zero_shot.gzsl_accuracy(scores, labels, SEEN, UNSEEN, calibration,
                                       per_class=True)
    metric = _feed(GZSLAccuracy(NUM_CLASSES, SEEN, UNSEEN, calibration), scores, labels)
    result = metric.result()
    for key in ("u", "s", "h"):
        _close(result[f"gzsl_{key}"], expected[key])
    # The cases the data was built for are there, and agree class by class.
    per_class = expected["per_class"]
    assert not set(NO_SAMPLES) & set(per_class)
    assert all(per_class[c] == 0.0 for c in NEVER_PREDICTED)
    vector = keras.ops.convert_to_numpy(metric.per_class_accuracy())
    for c in range(NUM_CLASSES):
        _close(vector[c], per_class.get(c, 0.0))
    assert 0.0 < expected["s"] < 1.0
    if calibration >= 0:
        assert 0.0 < expected["u"] < 1.0
    elif calibration == -10.0:  # every sample predicted seen: u = 0, so H = 0
        assert expected["u"] == expected["h"] == float(result["gzsl_h"]) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zsl_and_per_class_metrics_equal_the_evaluation_path(seed):
    scores, labels = _data(seed)
    zsl, _ = zero_shot.zsl_accuracy(scores, labels, UNSEEN)
    _close(_feed(ZSLAccuracy(NUM_CLASSES, UNSEEN), scores, labels).result(), zsl)

    classes, candidates = [0, 1, 2, 5, 7, 8], [0, 1, 3, 5, 7, 8]
    mean, _ = zero_shot.per_class_accuracy(scores, labels, classes, candidates,
                                           calibration=0.5, seen_classes=SEEN)
    metric = PerClassAccuracy(NUM_CLASSES, classes, candidates, calibration=0.5,
                              calibrated_classes=SEEN)
    _close(_feed(metric, scores, labels).result(), mean)


def test_compiled_evaluate_equals_the_evaluation_path():
    """Inside a compiled step (jit on TensorFlow and JAX) the numbers are the same."""
    scores, labels = _data(3)
    inputs = keras.Input((NUM_CLASSES,))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[GZSLAccuracy(NUM_CLASSES, SEEN, UNSEEN, calibration=0.75),
                           ZSLAccuracy(NUM_CLASSES, UNSEEN)],
                  jit_compile="auto" if keras.backend.backend() == "torch" else True)
    logs = model.evaluate(scores, labels, batch_size=32, verbose=0, return_dict=True)
    expected = zero_shot.gzsl_accuracy(scores, labels, SEEN, UNSEEN, 0.75)
    for key in ("u", "s", "h"):
        _close(logs[f"gzsl_{key}"], expected[key])
    _close(logs["zsl_acc"], zero_shot.zsl_accuracy(scores, labels, UNSEEN)[0])


def test_the_metric_result_is_the_zero_shot_rule(monkeypatch):
    """By construction: the metrics call zero_shot's rule functions, with keras.ops."""
    calls = []
    for name in ("predict_classes", "mean_class_accuracy", "harmonic_mean"):
        rule = getattr(zero_shot, name)

        def spy(*args, _rule=rule, _name=name, **kwargs):
            calls.append((_name, kwargs.get("xp")))
            return _rule(*args, **kwargs)

        monkeypatch.setattr(zero_shot, name, spy)
    scores, labels = _data(0)
    _feed(GZSLAccuracy(NUM_CLASSES, SEEN, UNSEEN), scores, labels).result()
    assert {name for name, xp in calls if xp is keras.ops} == {
        "predict_classes", "mean_class_accuracy", "harmonic_mean"}


def test_harmonic_mean_guard_is_the_same_on_both_paths():
    u = np.array([0.0, 0.0, 0.5, 1.0], "float32")
    s = np.array([0.0, 0.25, 0.5, 0.2], "float32")
    expected = [0.0, 0.0, 0.5, 1.0 / 3.0]
    np.testing.assert_allclose(zero_shot.harmonic_mean(u.astype("float64"), s), expected)
    tensor = zero_shot.harmonic_mean(keras.ops.convert_to_tensor(u),
                                     keras.ops.convert_to_tensor(s), xp=keras.ops)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), expected, rtol=1e-6)
    assert zero_shot.harmonic_mean(0.0, 0.0) == 0.0
    assert isinstance(zero_shot.harmonic_mean(0.5, 0.5), float)

import csv
import json

import numpy as np
import pytest

from sgma_keras import plots
from sgma_keras import zero_shot as eu
from sgma_keras.atomic_io import write_json_atomic
from sgma_keras.workflow.evaluation import write_per_class_csv


@pytest.fixture(autouse=True)
def _seed():
    # Overrides the conftest fixture: these tests build no Keras state, so
    # they skip its (slow) `clear_session()`.
    np.random.seed(0)
    yield


def _random_gzsl_data(seed=0, n=60, num_classes=7, seen=(0, 1, 2, 3), unseen=(4, 5)):
    """Imbalanced labels; class 6 is in neither set and must be ignored."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(num_classes, size=n, p=[0.3, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1])
    scores = rng.normal(size=(n, num_classes))
    scores[np.arange(n), labels] += 1.0
    scores[:, list(seen)] += 0.7  # the usual bias towards seen classes
    return scores, labels, list(seen), list(unseen)


def _brute_force_gzsl(scores, labels, seen, unseen, gamma):
    """Reference: explicit loops, explicit argmax over seen + unseen."""
    candidates = sorted(seen + unseen)
    accs = {}
    for c in candidates:
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue
        hits = 0
        for i in idx:
            calibrated = [
                scores[i, k] - (gamma if k in seen else 0.0) for k in candidates
            ]
            hits += candidates[int(np.argmax(calibrated))] == c
        accs[c] = hits / idx.size
    s = np.mean([a for c, a in accs.items() if c in seen])
    u = np.mean([a for c, a in accs.items() if c in unseen])
    return s, u


def test_per_class_accuracy_hand_computed():
    # Class 0: 3 samples, 2 right; class 1: 1 sample, right; class 2: 1, wrong.
    scores = np.array(
        [
            [1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 1.0, 0.5],
        ]
    )
    labels = [0, 0, 0, 1, 2]
    mean, accs = eu.per_class_accuracy(scores, labels, [0, 1, 2], [0, 1, 2])
    assert accs == pytest.approx({0: 2 / 3, 1: 1.0, 2: 0.0})
    assert mean == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)  # per-sample: 3/5
    # Candidates {0, 2}: sample 2 -> 0 (right), 3 -> 0, 4 -> 2 (right).
    mean, accs = eu.per_class_accuracy(scores, labels, [0, 2], [0, 2])
    assert accs == pytest.approx({0: 1.0, 2: 1.0})
    # Calibration lowers class 1 (the "seen" one) by 0.6: sample 4 -> class 2.
    _, accs = eu.per_class_accuracy(
        scores, labels, [0, 1, 2], [0, 1, 2], calibration=0.6, seen_classes=[1]
    )
    assert accs == pytest.approx({0: 2 / 3, 1: 1.0, 2: 1.0})
    # No sample of the requested classes.
    assert eu.per_class_accuracy(scores, labels, [2], [0, 1, 2]) == (0.0, {2: 0.0})
    assert eu.per_class_accuracy(scores[:4], labels[:4], [2], [0, 1]) == (0.0, {})


def test_zsl_and_gzsl_hand_computed():
    labels = np.array([0, 0, 1, 2, 2, 2, 3, 4])
    predicted = np.array([0, 2, 1, 2, 2, 0, 1, 4])
    scores = np.eye(5)[predicted]
    r = eu.gzsl_accuracy(scores, labels, [0, 1], [2, 3], per_class=True)
    s, u = 0.75, 1 / 3  # mean(1/2, 1) and mean(2/3, 0)
    assert r["s"] == pytest.approx(s) and r["u"] == pytest.approx(u)
    assert r["h"] == pytest.approx(2 * u * s / (u + s))
    assert r["per_class"] == pytest.approx({0: 0.5, 1: 1.0, 2: 2 / 3, 3: 0.0})
    # ZSL ignores the seen scores: sample 5 -> argmax over {2, 3} is 2 (tie, lower id).
    mean, accs = eu.zsl_accuracy(scores, labels, [2, 3])
    assert accs == pytest.approx({2: 1.0, 3: 0.0})
    assert eu.harmonic_mean(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="disjoint"):
        eu.gzsl_accuracy(scores, labels, [0, 1], [1, 2])


def test_gzsl_matches_brute_force_with_calibration():
    scores, labels, seen, unseen = _random_gzsl_data()
    for gamma in (0.0, 0.5, 1.3):
        r = eu.gzsl_accuracy(scores, labels, seen, unseen, calibration=gamma)
        s, u = _brute_force_gzsl(scores, labels, seen, unseen, gamma)
        assert r["s"] == pytest.approx(s) and r["u"] == pytest.approx(u)


def test_seen_unseen_curve_is_exact_and_reaches_both_ends():
    scores, labels, seen, unseen = _random_gzsl_data()
    s, u, gammas = eu.seen_unseen_curve(
        scores, labels, seen, unseen, return_gammas=True
    )
    full = eu.gzsl_accuracy(scores, labels, seen, unseen, calibration=-1e9)
    none = eu.gzsl_accuracy(scores, labels, seen, unseen, calibration=1e9)
    # All-seen end (s_max, 0) and all-unseen end (0, u_max).
    assert (s[0], u[0]) == pytest.approx((full["s"], 0.0))
    assert (s[-1], u[-1]) == pytest.approx((0.0, none["u"]))
    assert np.all(np.diff(gammas) > 0)
    assert np.all(np.diff(s) <= 1e-12) and np.all(np.diff(u) >= -1e-12)
    # Every point is what the explicit calibrated argmax gives.
    for i in range(0, gammas.size, 7):
        r = eu.gzsl_accuracy(scores, labels, seen, unseen, calibration=gammas[i])
        assert (s[i], u[i]) == pytest.approx((r["s"], r["u"]))
    # Sub-sampled curve keeps both ends.
    s5, u5 = eu.seen_unseen_curve(scores, labels, seen, unseen, num_points=5)
    assert s5.size == 5
    assert (s5[0], u5[0], s5[-1], u5[-1]) == pytest.approx((s[0], u[0], s[-1], u[-1]))


def test_ausuc_hand_computed():
    # (0, .6) - (.4, .5) - (.8, 0): .4 * (.6 + .5) / 2 + .4 * (.5 + 0) / 2.
    assert eu.ausuc([0.8, 0.4, 0.0], [0.0, 0.5, 0.6]) == pytest.approx(0.32)
    # The end points are added: one point (s, u) closes into the curve
    # (0, u) - (s, u) - (s, 0), a rectangle of area s * u.
    assert eu.ausuc([0.5], [0.4]) == pytest.approx(0.2)
    # Order of the input does not matter.
    assert eu.ausuc([0.0, 0.8, 0.4], [0.6, 0.0, 0.5]) == pytest.approx(0.32)


def test_ausuc_of_perfect_and_random_data():
    # Perfect scores: the curve passes through (1, 1), AUSUC = 1.
    labels = np.array([0, 1, 2, 3, 0, 2])
    scores = np.eye(4)[labels] * 5.0
    s, u = eu.seen_unseen_curve(scores, labels, [0, 1], [2, 3])
    assert eu.ausuc(s, u) == pytest.approx(1.0)
    scores, labels, seen, unseen = _random_gzsl_data()
    s, u = eu.seen_unseen_curve(scores, labels, seen, unseen)
    area = eu.ausuc(s, u)
    assert 0.0 < area < max(s) * max(u)


def test_choose_calibration_hand_computed_and_exact():
    # Gaps (best seen - best unseen): 3, 1, -1. H = 1 for 1 < gamma < 3.
    scores = np.array([[3.0, 0.0], [3.0, 2.0], [0.0, 1.0]])
    assert eu.choose_calibration(scores, [0, 1, 1], [0], [1]) == (2.0, 1.0)
    # On a grid, the best grid value (ties -> smallest |gamma|).
    assert eu.choose_calibration(scores, [0, 1, 1], [0], [1], grid=[0.0, 1.5, 2.5]) == (
        1.5,
        1.0,
    )
    # Exact search is at least as good as any fine grid, and its H is real.
    scores, labels, seen, unseen = _random_gzsl_data(seed=1)
    gamma, h = eu.choose_calibration(scores, labels, seen, unseen)
    _, h_grid = eu.choose_calibration(
        scores, labels, seen, unseen, grid=np.linspace(-5, 5, 401)
    )
    assert h >= h_grid - 1e-12
    assert eu.gzsl_accuracy(scores, labels, seen, unseen, gamma)["h"] == pytest.approx(
        h
    )
    assert h > eu.gzsl_accuracy(scores, labels, seen, unseen)["h"]


def test_plot_seen_unseen_curve(tmp_path):
    path = tmp_path / "sub" / "curve.png"
    plots.plot_seen_unseen_curve(
        [0.8, 0.4, 0.0], [0.0, 0.5, 0.6], path, "test", marker=(0.4, 0.5)
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (
        int.from_bytes(data[16:20], "big"),
        int.from_bytes(data[20:24], "big"),
    )
    assert (width, height) == (500, 500)
    assert len(data) > 5000


def test_part_localisation_score_hand_computed():
    nan = np.nan
    # Two predicted parts, three GT parts ("head", "back", "tail").
    boxes = np.array(
        [
            [[0.2, 0.2, 0.2], [0.8, 0.8, 0.2]],  # image 0
            [[0.5, 0.5, 0.4], [0.1, 0.9, 0.1]],  # image 1
            [[0.5, 0.5, 1.0], [0.5, 0.5, 1.0]],  # image 2: no visible part
        ]
    )
    locs = np.array(
        [
            [
                [0.25, 0.15],
                [0.5, 0.5],
                [0.85, 0.9],
            ],  # head in box 0; tail on box 1's edge
            [[0.6, 0.4], [nan, nan], [0.9, 0.9]],  # head in box 0, box 1 hits nothing
            [[nan, nan], [nan, nan], [nan, nan]],
        ]
    )
    r = eu.part_localisation_score(boxes, locs, ["head", "back", "tail"])
    assert r["num_images"] == 2
    assert r["part_hit_rate"] == pytest.approx([1.0, 0.5])
    assert r["gt_visible_counts"] == [2, 1, 2]
    assert r["hit_matrix"][0] == pytest.approx([1.0, 0.0, 0.0])
    assert r["hit_matrix"][1] == pytest.approx([0.0, 0.0, 0.5])
    assert r["best_gt_part"] == [
        {"gt_part": "head", "hit_rate": 1.0},
        {"gt_part": "tail", "hit_rate": 0.5},
    ]
    json.dumps(r, allow_nan=False)  # strict-JSON ready

    # A part never visible gives None, not NaN.
    r = eu.part_localisation_score(boxes[:1], locs[:1, :, :] * [[[1], [nan], [1]]])
    assert r["hit_matrix"][0][1] is None
    assert r["gt_part_names"] == ["part_0", "part_1", "part_2"]


def test_write_json_atomic_is_part_of_the_api(tmp_path):
    # The writer itself is tested in test_atomic_io.py.
    path = tmp_path / "results.json"
    write_json_atomic(path, {"acc": np.float32(0.5), "h": float("nan")})
    assert json.loads(path.read_text()) == {"acc": 0.5, "h": None}


def test_write_per_class_csv(tmp_path):
    path = tmp_path / "per_class.csv"
    write_per_class_csv(
        path,
        ["cat", "dog", "emu"],
        {"zsl": {2: 0.25, 1: 1.0}, "gzsl": {"0": 0.5, 2: 0.125}},
    )
    rows = list(csv.reader(path.open()))
    assert rows == [
        ["class_id", "class_name", "zsl", "gzsl"],
        ["0", "cat", "", "0.500000"],
        ["1", "dog", "1.000000", ""],
        ["2", "emu", "0.250000", "0.125000"],
    ]

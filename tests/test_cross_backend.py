"""Identical weights give identical outputs on every backend.

Each backend's test run saves the reference model once (in-process) and loads
it under the two other backends (subprocesses, started together); across the
three runs every (saving, loading) pair is covered. Also: an in-process save /
load round trip.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import cross_backend_worker as worker
from tests import helpers as H
from tests.helpers import _seed  # noqa: F401 (a cheaper session reset)

OTHER_BACKENDS = [b for b in H.BACKENDS if b != H.BACKEND]
TOLERANCE = 1e-4  # max |difference| of the scores (values of order 1-10)
WORKER_TIMEOUT = 400  # s; a cold JAX start on a loaded 2-core machine is slow


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saves the reference model here and starts the other backends' loads."""
    directory = str(tmp_path_factory.mktemp("cross_backend"))
    keras.utils.set_random_seed(0)
    worker.save(directory)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=worker.REPO)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cross_backend_worker.py")
    processes = {
        backend: subprocess.Popen(
            [sys.executable, script, "load", directory],
            env=dict(env, KERAS_BACKEND=backend),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for backend in OTHER_BACKENDS
    }
    yield directory, processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def _without_counters(config):
    import json
    import re

    return json.loads(re.sub(r'"([a-z][a-z0-9_]*?)(_\d+)?"', r'"\1"', json.dumps(config)))


def test_in_process_save_load_round_trip(saved):
    directory, _ = saved
    diffs = worker.load(directory)
    for name, diff in diffs.items():
        assert diff <= 1e-6, (name, diff)
    model = keras.saving.load_model(os.path.join(directory, "model.keras"))
    reference = worker.reference_model()
    assert type(model).__name__ == "SGMA"
    config, expected = model.get_config(), reference.get_config()
    assert config.pop("name") == "sgma" and expected.pop("name").startswith("sgma")
    # Nested backbones are Functional models whose auto-named layers take Keras's
    # global name counters (`re_lu_23`): they depend on what the process built before.
    assert _without_counters(config) == _without_counters(expected)
    assert [tuple(w.shape) for w in model.weights] == [tuple(w.shape) for w in reference.weights]
    np.testing.assert_array_equal(model.seen_classes, H.SEEN)
    np.testing.assert_array_equal(model.semantics, H.class_semantics())
    # The scores are not trivially small: the tolerance below means something.
    assert np.abs(np.load(os.path.join(directory, "scores.npy"))).max() > 0.5


def test_set_class_semantics_survives_save_load(saved, tmp_path):
    directory, _ = saved
    model = keras.saving.load_model(os.path.join(directory, "model.keras"))
    x = np.load(os.path.join(directory, "x.npy"))
    order = [4, 3, 0, 5, 1, 2]
    model.set_class_semantics(H.class_semantics()[order])
    expected = H.numpy(model(x)["scores"])
    path = str(tmp_path / "swapped.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored.seen_classes, [order.index(c) for c in H.SEEN])
    np.testing.assert_allclose(H.numpy(restored(x)["scores"]), expected, atol=1e-6)
    np.testing.assert_allclose(
        expected, np.load(os.path.join(directory, "scores.npy"))[:, order], atol=1e-5
    )


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_saved_model_loads_on_other_backend(saved, backend):
    _, processes = saved
    process = processes[backend]
    try:
        stdout, stderr = process.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"loading under {backend} took over {WORKER_TIMEOUT} s")
    assert process.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    diffs = result["max_abs_diff"]
    assert set(diffs) == set(worker.OUTPUTS)
    for name, diff in diffs.items():
        assert diff < TOLERANCE, f"{H.BACKEND} -> {backend}: {name} differs by {diff}"

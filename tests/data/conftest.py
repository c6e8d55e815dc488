"""Fixtures for the data tests: a tiny built-in dataset and small image files."""

import keras
import numpy as np
import pytest

from sgma_keras.data.builtin import make_builtin_dataset

# Small enough to generate in about a second: 8 classes (2 unseen), 64-pixel images.
TINY_BUILTIN = dict(num_classes=8, num_images=96, image_size=64, num_unseen=2, seed=0)


@pytest.fixture(scope="session")
def builtin_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("builtin"))
    make_builtin_dataset(root, **TINY_BUILTIN)
    return root


@pytest.fixture
def builtin_data(builtin_root):
    # Reuses the session's files: fast, and each test gets its own ZeroShotData.
    return make_builtin_dataset(builtin_root, **TINY_BUILTIN)


@pytest.fixture(autouse=True)
def _seed():
    # Overrides tests/conftest.py's fixture of the same name: same seeding, but
    # clear_session without its gc.collect(), which costs ~1 s per test once TensorFlow
    # is loaded; these tests build at most one tiny model.
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.backend.clear_session(free_memory=False)

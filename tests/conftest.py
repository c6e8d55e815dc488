import os

# Tests are run once per backend (see Makefile); default to TensorFlow when run by hand.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    # free_memory=False: the full garbage collection costs ~1 s a test once TF is loaded.
    keras.backend.clear_session(free_memory=False)

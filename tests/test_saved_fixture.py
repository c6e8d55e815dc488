"""`.keras` files saved by earlier releases still load and compute the same outputs.

- `fixtures/sgma_v0_1_0/`: the tiny reference model (`tests/cross_backend_worker.py
  save`), saved by sgma-keras 0.1.0 on TensorFlow before the box-gradient options
  (`mask_at`, `peak_gradient_temperature`, `map_losses_reach_backbone`) existed;
- `fixtures/sgma_flat/default/` and `.../options/`: the same model, and one with
  non-default options (`options.json`), saved by the last release of the flat
  constructor arguments, before the model became its pieces.

Each directory holds the model, its input batch and its outputs. Renaming an argument,
a layer or a weight path breaks every checkpoint users have; this test catches it.
"""

import json
import os

import numpy as np
import pytest

from sgma_keras.upgrade import MODEL_FORMAT_VERSION
from tests import cross_backend_worker as worker

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("name", ["sgma_v0_1_0", "sgma_flat/default", "sgma_flat/options"])
def test_an_earlier_release_checkpoint_loads_with_the_same_outputs(name):
    diffs = worker.load(os.path.join(FIXTURES, name))
    assert set(diffs) == set(worker.OUTPUTS)
    for output, diff in diffs.items():
        assert np.isfinite(diff) and diff < 1e-4, (name, output, diff)


def test_the_options_reach_the_rebuilt_model_and_a_new_save_keeps_them(tmp_path):
    import keras

    folder = os.path.join(FIXTURES, "sgma_flat", "options")
    with open(os.path.join(folder, "options.json")) as handle:
        options = json.load(handle)
    model = keras.saving.load_model(os.path.join(folder, "model.keras"))
    assert model.cropper.mask_at == options["boxcar_mask_at"]
    assert model.cropper.anchor == options["box_anchor"]
    assert model.cropper.peak_gradient_temperature == options["peak_gradient_temperature"]
    assert model.cropper.margin == options["boxcar_margin"]
    assert model.embedding.normalize and model.embedding.initial_scale == 8.0
    assert model.global_size == 16 and model.attention_backbone is not None
    assert (model.gamma_cc, list(model.head_scales)) == (2.0, [2.0, 0.5])
    assert model.class_names[0] == "bird_0" and model.calibration == 0.5
    assert model.loss_settings["cpt_weight"] == 0.5
    assert model.loss_settings["div_reduction"] == "mean"
    # Saved again, it is in the current layout and still computes the same.
    path = str(tmp_path / "again.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert again.get_config()["version"] == MODEL_FORMAT_VERSION
    x = np.load(os.path.join(folder, "x.npy"))
    for output, value in worker.outputs_of(again, x).items():
        np.testing.assert_allclose(value, np.load(os.path.join(folder, f"{output}.npy")),
                                   atol=1e-4, err_msg=output)


def test_the_first_release_loads_as_it_was_trained():
    """Options added after 0.1.0 take the values its models were trained with, and
    its semantics transform is read off its stored vectors."""
    import keras

    model = keras.saving.load_model(os.path.join(FIXTURES, "sgma_v0_1_0", "model.keras"))
    assert model.cropper.mask_at == "sample_points"
    assert model.cropper.peak_gradient_temperature is None
    assert model.map_losses_reach_backbone is True
    assert model.semantics_transform == "l2"

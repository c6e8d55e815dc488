"""Coupled (PyTorch-style) weight decay against the PyTorch update formula."""

import keras
import numpy as np
import pytest

from sgma_keras.config import load_config
from sgma_keras.optimizers import AlternatingAdam, AlternatingSGD, CoupledAdam, CoupledSGD
from sgma_keras.workflow.build import make_optimizer
from tests.helpers import _seed, easy_batch, numpy, tiny_sgma  # noqa: F401


def torch_sgd_steps(w, grads, lr, momentum, wd):
    """torch.optim.SGD(lr, momentum, weight_decay=wd), dampening 0, no nesterov."""
    w, buf = w.astype("float64"), None
    for g in grads:
        d = g + wd * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


def test_coupled_sgd_matches_the_pytorch_formula():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype("float32")
    grads = [rng.normal(size=(3, 4)).astype("float32") for _ in range(3)]
    w = keras.Variable(w0)
    opt = CoupledSGD(0.05, momentum=0.9, coupled_weight_decay=5e-3)
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g)], [w])
    expected = torch_sgd_steps(w0, grads, 0.05, 0.9, 5e-3)
    np.testing.assert_allclose(numpy(w), expected, rtol=1e-5, atol=1e-6)
    # Keras's decoupled decay differs (the difference is the point).
    d = keras.Variable(w0)
    decoupled = keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=5e-3)
    for g in grads:
        decoupled.apply([keras.ops.convert_to_tensor(g)], [d])
    assert np.abs(numpy(d) - expected).max() > 1e-4


def test_coupled_adam_adds_the_decay_to_the_gradient():
    w0 = np.array([1.0, -2.0], "float32")
    g = np.array([0.3, 0.1], "float32")
    w, ref = keras.Variable(w0), keras.Variable(w0)
    CoupledAdam(0.01, coupled_weight_decay=0.1).apply([keras.ops.convert_to_tensor(g)], [w])
    keras.optimizers.Adam(0.01).apply([keras.ops.convert_to_tensor(g + 0.1 * w0)], [ref])
    np.testing.assert_allclose(numpy(w), numpy(ref), rtol=1e-6)


def test_optimizer_round_trips_and_rejects_decoupled_decay():
    opt = CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=1e-3)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, CoupledSGD) and again.coupled_weight_decay == 1e-3
    with pytest.raises(ValueError, match="not both"):
        CoupledSGD(0.1, weight_decay=1e-3, coupled_weight_decay=1e-3)


@pytest.mark.parametrize("path", ["configs/cub.json", "configs/awa.json", "configs/flo.json"])
def test_paper_configs_use_coupled_decay(path):
    cfg = load_config(path, check_paths=False)
    assert cfg["train"]["weight_decay_mode"] == "coupled"
    opt = make_optimizer(cfg["train"])
    assert isinstance(opt, CoupledSGD) and opt.coupled_weight_decay == 5e-4
    assert not opt.weight_decay


def test_decoupled_mode_is_keras_weight_decay():
    cfg = load_config("configs/demo.json", ["train.weight_decay_mode=decoupled"],
                      check_paths=False)
    opt = make_optimizer(cfg["train"])
    assert type(opt) is keras.optimizers.Adam or not isinstance(opt, CoupledAdam)
    assert opt.weight_decay == cfg["train"]["weight_decay"]


# --------------------------------------------------------------------------
# Alternating turns (train.joint.schedule = "alternate")
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls,kwargs,reference", [
    (AlternatingSGD, {"momentum": 0.9}, lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
    (AlternatingSGD, {"momentum": 0.9, "coupled_weight_decay": 0.1},
     lambda: CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=0.1)),
    (AlternatingAdam, {"weight_decay": 0.1}, lambda: keras.optimizers.Adam(0.1, weight_decay=0.1)),
])
def test_a_group_out_of_turn_keeps_its_whole_state(cls, kwargs, reference):
    """Turns of 2 steps, group a first: each group's trajectory is the stock
    optimizer's run on that group's own steps only (momentum and moments kept
    across the frozen turns, not decayed), and it is frozen exactly in between."""
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=2).astype("float32") for _ in range(8)]
    a, b = keras.Variable([1.0, -1.0]), keras.Variable([1.0, -1.0])
    opt = cls(0.1, alternate_steps=2, **kwargs)
    opt.assign_groups([[a], [b]])
    seen = []
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g), keras.ops.convert_to_tensor(g)], [a, b])
        seen.append((numpy(a).copy(), numpy(b).copy()))
    for step in (2, 3, 6, 7):  # b's turns: a frozen
        np.testing.assert_array_equal(seen[step][0], seen[1 if step < 4 else 5][0])
    for step in (0, 1, 4, 5):  # a's turns: b frozen
        np.testing.assert_array_equal(seen[step][1], seen[step - 1][1] if step else [1.0, -1.0])

    def stock(turn_steps):
        w, ref = keras.Variable([1.0, -1.0]), reference()
        for step in turn_steps:
            ref.apply([keras.ops.convert_to_tensor(grads[step])], [w])
        return numpy(w)

    if cls is AlternatingAdam:
        return  # its bias correction counts every step, so only the freezing is exact
    np.testing.assert_allclose(seen[-1][0], stock([0, 1, 4, 5]), rtol=1e-5)
    np.testing.assert_allclose(seen[-1][1], stock([2, 3, 6, 7]), rtol=1e-5)


def test_alternate_schedule_trains_the_attention_subnet_and_the_rest_in_turns():
    """In a compiled fit on each backend, step 1 moves the rest and not the attention
    subnet, step 2 the attention subnet and not the rest."""
    model = tiny_sgma()
    model.set_stage("joint")
    attention = model.attention_subnet_variables()
    ids = {id(v) for v in attention}
    rest = [v for v in model.trainable_variables if id(v) not in ids]
    assert attention and rest
    opt = AlternatingAdam(0.01, alternate_steps=1)
    opt.assign_groups([rest, attention])
    model.compile(optimizer=opt)
    images, labels = easy_batch()

    def values(variables):
        return [numpy(v).copy() for v in variables]

    def moved(before, variables):
        return sum(not np.array_equal(x, y) for x, y in zip(before, values(variables)))

    for turn, (trains, frozen) in enumerate([(rest, attention), (attention, rest)]):
        before_trains, before_frozen = values(trains), values(frozen)
        model.train_on_batch(images, labels)
        assert moved(before_frozen, frozen) == 0, f"turn {turn}: a frozen variable moved"
        assert moved(before_trains, trains) >= len(trains) // 2, f"turn {turn}: nothing trained"


def test_make_optimizer_alternates_with_either_decay_mode():
    cfg = load_config("configs/cub.json", check_paths=False)
    opt = make_optimizer(cfg["train"], alternate_steps=5)
    assert isinstance(opt, AlternatingSGD) and opt.coupled_weight_decay == 5e-4
    assert opt.alternate_steps == 5 and opt.momentum == cfg["train"]["momentum"]
    demo = load_config("configs/demo.json", ["train.weight_decay_mode=decoupled"],
                       check_paths=False)
    opt = make_optimizer(demo["train"], alternate_steps=3)
    assert isinstance(opt, (AlternatingAdam, AlternatingSGD))
    assert opt.weight_decay == demo["train"]["weight_decay"] and not opt.coupled_weight_decay
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is type(opt) and again.alternate_steps == 3

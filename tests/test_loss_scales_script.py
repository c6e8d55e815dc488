"""benchmarks/loss_scales.py: the per-term table, on the tiny model (seconds)."""

import pytest

from tests.helpers import _seed, load_benchmark  # noqa: F401


@pytest.mark.parametrize("path", ["configs/cub.json", "configs/awa.json", "configs/flo.json"])
def test_paper_configs_are_balanced_at_initialisation(path, capsys):
    script = load_benchmark("loss_scales")
    result = script.main(["--config", path, "--tiny", "--set", "model.backbone.tiny_width=4"])
    out = capsys.readouterr().out
    for term in ("L_cls", "L_cct", "L_cpt", "L_div"):
        assert f"| {term} |" in out
    cls = result["weighted"]["L_cls"]
    assert set(result["weighted"]) == {"L_cls", "L_cct", "L_cpt", "L_div"}
    assert all(value <= 10 * cls for value in result["weighted"].values()), result


def test_the_paper_sums_are_what_was_unbalanced(capsys):
    script = load_benchmark("loss_scales")
    result = script.main(["--config", "configs/cub.json", "--tiny", "--set", "model.backbone.tiny_width=4",
                          "--set", "loss.div_reduction=sum", "--set", "loss.cct_weight=1.0"])
    capsys.readouterr()
    cls = result["weighted"]["L_cls"]
    assert result["weighted"]["L_cct"] > 10 * cls  # ~0.8 hinge x 119 other classes
    assert result["weighted"]["L_div"] > 10 * cls  # summed over 14x14 maps here

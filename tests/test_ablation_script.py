"""benchmarks/ablation.py: the summary, the claim checks and resuming a study.

Training itself is covered by test_training.py; here the recorded runs are
made up, so the report logic is tested in a second.
"""

import json

import pytest

from tests.helpers import load_benchmark


@pytest.fixture(scope="module")
def ablation():
    return load_benchmark("ablation")


def _runs(zsl, loc, config="configs/ablation.json", overrides=()):
    """Three made-up seeds per variant: `zsl[v]` and `loc[v]` are their values."""
    runs = {}
    for variant in zsl:
        runs[variant] = [
            dict(zsl_top1=zsl[variant][i], gzsl_u=0.1, gzsl_s=0.3, gzsl_h=0.15,
                 localisation=None if loc[variant] is None else loc[variant][i],
                 seconds=10.0, seed=i, config=config, overrides=list(overrides),
                 machine="x86_64, 2 cores", backend="tensorflow")
            for i in range(3)
        ]
    return runs


ZSL = {"global": [0.50, 0.51, 0.52], "random": [0.50, 0.50, 0.50],
       "no_cpt_div": [0.60, 0.64, 0.68], "full": [0.60, 0.61, 0.62], "no_cct": [0.40, 0.41, 0.42]}
LOC = {"global": None, "random": [0.30, 0.30, 0.30], "no_cpt_div": [0.55, 0.60, 0.65],
       "full": [0.50, 0.50, 0.50], "no_cct": [0.5, 0.5, 0.5]}


def test_summary_uses_the_sample_standard_deviation(ablation):
    table = ablation.summarise(_runs(ZSL, LOC))
    mean, sd = table["no_cpt_div"]["zsl_top1"]
    assert mean == pytest.approx(0.64)
    assert sd == pytest.approx(0.04)  # ddof=1; the population sd would be 0.0327
    assert table["global"]["localisation"] is None
    assert table["full"]["seeds"] == 3


def test_claims_hold_only_beyond_two_standard_deviations(ablation):
    lines = ablation.check_claims(ablation.summarise(_runs(ZSL, LOC)))
    verdicts = {line.split(":")[0][2:]: line.split("**")[1] for line in lines}
    assert verdicts == {
        "learned parts localise the annotated parts better than random boxes": "holds",
        "global + local beats global only (ZSL top-1)": "holds",  # +10 > 2 x 1
        "compactness + diversity improve localisation": "not shown",  # -10 within 2 x 5
        "compactness + diversity improve accuracy (ZSL top-1)": "not shown",
        "the class-center triplet loss improves accuracy (ZSL top-1)": "holds",
    }
    table = ablation.summarise(_runs({**ZSL, "no_cct": [0.80, 0.81, 0.82]}, LOC))
    assert "**reversed**" in ablation.check_claims(table)[-1]
    partial = ablation.summarise(_runs({"full": ZSL["full"]}, {"full": LOC["full"]}))
    assert all("not measured" in line for line in ablation.check_claims(partial))


def test_report_only_writes_the_table_plot_and_claims(ablation, tmp_path):
    (tmp_path / "runs.json").write_text(json.dumps(_runs(ZSL, LOC)))
    ablation.main(["--config", "configs/ablation.json", "--output", str(tmp_path), "--report-only"])
    text = (tmp_path / "ablation.md").read_text()
    assert "| full | 61.0 ± 1.0 |" in text
    assert "--report-only" not in text  # the command shown is the one that trains
    assert "backend tensorflow; 15 runs, 150 s" in text
    assert text.count("**holds**") == 3
    assert json.loads((tmp_path / "ablation.json").read_text())["full"]["seeds"] == 3
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_resuming_with_other_settings_is_refused(ablation, tmp_path):
    (tmp_path / "runs.json").write_text(json.dumps(_runs(ZSL, LOC, overrides=["loss.cpt_weight=0.1"])))
    with pytest.raises(SystemExit, match="runs.json: .*loss.cpt_weight=0.1.*another --output"):
        ablation.main(["--config", "configs/ablation.json", "--output", str(tmp_path), "--report-only"])


@pytest.mark.parametrize("text", ["{trunc", "[1, 2]"])
def test_a_broken_record_is_named_and_kept(ablation, tmp_path, text):
    (tmp_path / "runs.json").write_text(text)
    with pytest.raises(SystemExit, match="runs.json: "):
        ablation.main(["--output", str(tmp_path), "--report-only"])
    assert (tmp_path / "runs.json").read_text() == text  # nothing overwritten

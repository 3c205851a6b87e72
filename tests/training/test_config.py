"""Configuration files, overrides and their errors (bargainnet.training.config)."""

from __future__ import annotations

import pytest
import yaml

from bargainnet.training.config import TrainConfig, load_config, parse_override, save_config
from bargainnet.errors import InputError
from tests.conftest import REPO

CONFIGS = REPO / "configs"
ABLATIONS = sorted(CONFIGS.glob("ablation_*.yaml"))


def test_paper_configuration_matches_the_paper():
    cfg = load_config(CONFIGS / "bargainnet.yaml")
    m, lo, o = cfg.model, cfg.loss, cfg.optim
    assert (m.ngf, m.num_downs, m.code_dim, m.use_mask, m.use_code, m.code_source) == (64, 8, 16, True, True, "background")
    assert (lo.margin, lo.triplet_weight, lo.distance) == (1.0, 0.01, "euclidean")
    assert lo.background_triplet and lo.foreground_triplet
    assert (o.lr, o.betas, o.schedule) == (1e-4, (0.9, 0.999), "constant")
    assert (cfg.data.size, cfg.data.batch_size, cfg.data.scale) == (256, 1, (0.5, 1.0))
    assert cfg.trainer.max_steps == 200 * 65_742  # 200 epochs at batch 1 over iHarmony4's training pairs


# (use_mask, use_code, code_source, background_triplet, foreground_triplet) per supplement Table 2 row
EXPECTED = {
    "ablation_1_mask_only": (True, False, "background", False, False),
    "ablation_2_mask_code": (True, True, "background", False, False),
    "ablation_3_full": (True, True, "background", True, True),
    "ablation_4_background_triplet": (True, True, "background", True, False),
    "ablation_5_foreground_triplet": (True, True, "background", False, True),
    "ablation_6_no_mask": (False, True, "background", True, True),
    "ablation_7_code_only": (False, True, "background", False, False),
    "ablation_8_composite_code": (True, True, "composite", True, True),
}


def test_every_ablation_row_has_a_file():
    assert sorted(p.stem for p in ABLATIONS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_ablation_switches(path):
    cfg = load_config(path)
    m, lo = cfg.model, cfg.loss
    assert (m.use_mask, m.use_code, m.code_source, lo.background_triplet, lo.foreground_triplet) == EXPECTED[path.stem]
    # everything else is the paper's
    paper = load_config(CONFIGS / "bargainnet.yaml")
    assert (m.ngf, m.num_downs, m.code_dim, lo.margin, lo.triplet_weight) == (64, 8, 16, 1.0, 0.01)
    assert cfg.optim == paper.optim and cfg.data == paper.data and cfg.trainer == paper.trainer


@pytest.mark.parametrize("name", ["tiny", "cpu_small"])
def test_small_configurations_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.data.size % cfg.model.size_multiple == 0


def test_overrides_are_typed_and_sweeps_expressible():
    cfg = load_config(
        CONFIGS / "bargainnet.yaml",
        ["loss.margin=0.25", "loss.triplet_weight=1e-3", "model.code_dim=8", "optim.betas=[0.5,0.999]",
         "trainer.precision=bf16-mixed", "data.subsets=[HCOCO,HFlickr]", "trainer.devices=2", "data.val_samples=null"],
    )
    assert cfg.loss.margin == 0.25 and isinstance(cfg.loss.margin, float)
    assert cfg.loss.triplet_weight == 1e-3  # YAML reads "1e-3" as a string; the float field converts it
    assert cfg.model.code_dim == 8 and cfg.optim.betas == (0.5, 0.999)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.devices == 2
    assert cfg.data.subsets == ["HCOCO", "HFlickr"] and cfg.data.val_samples is None


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.ngff=32", ["unknown configuration key 'model.ngff'", "did you mean 'model.ngf'"]),
        ("modle.ngf=32", ["unknown configuration key 'modle'", "did you mean 'model'"]),
        ("trainer.max_steps=abc", ["'trainer.max_steps' must be int", "'abc'"]),
        ("trainer.deterministic=1", ["'trainer.deterministic' must be bool"]),
        ("model.code_source=whole", ["code_source must be one of"]),
        ("optim.schedule=exp", ["schedule must be one of"]),
        ("data.size=32", ["size must be at least 64"]),
        ("data.grade=1.5", ["grade must be a probability"]),
        ("loss.margin", ["must look like key.sub=value"]),
        ("model=3", ["'model' must be a mapping"]),
    ],
)
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(InputError) as err:
        load_config(CONFIGS / "tiny.yaml", [override])
    for w in words:
        assert w in str(err.value)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base: " + str(CONFIGS / "tiny.yaml") + "\ntrainer:\n  max_step: 3\n")
    with pytest.raises(InputError, match=r"unknown configuration key 'trainer.max_step' in .*bad.yaml.*'trainer.max_steps'"):
        load_config(path)


def test_base_chain_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("model:\n  ngf: 8\n  num_downs: 5\ndata:\n  size: 64\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nmodel:\n  ngf: 16\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert (cfg.model.ngf, cfg.model.num_downs, cfg.data.size) == (16, 5, 64)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(InputError, match="loops"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_configuration_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "ablation_8_composite_code.yaml", ["optim.lr=3e-4"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg
    assert TrainConfig.from_dict(yaml.safe_load(path.read_text())) == cfg
    assert not [p for p in tmp_path.iterdir() if p.name != "config.yaml"]  # no temporary left


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=1e-4") == (["a", "b"], "1e-4")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")

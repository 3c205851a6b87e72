"""Lightning training on a tiny synthesized set: learning, run folder, exact resume, NaN stop,
ablations, schedules (bargainnet.training)."""

from __future__ import annotations

import csv
import dataclasses
import math

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from bargainnet.training.config import load_config
from bargainnet.training.run import _load_initial_weights
from bargainnet.errors import OutputError
from bargainnet.models.bargainnet import BargainNet
from bargainnet.training import (
    NonFiniteLossError,
    PositionDataset,
    PositionSampler,
    checkpoint_config,
    lr_factor,
    model_from_checkpoint,
    read_checkpoint,
    train,
)
from tests.conftest import REPO

CONFIGS = REPO / "configs"
QUIET = dict(progress_bar=False, loggers=False)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from bargainnet.data.synthesis import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), n_train=8, n_test=4, size=64, seed=0)


def tiny(*overrides):
    return load_config(CONFIGS / "tiny.yaml", list(overrides))


class Recorder(L.Callback):
    """(global step before the step, loss) of every training step."""

    def __init__(self):
        self.steps, self.losses = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(scope="module")
def tiny_run(tiny_root, tmp_path_factory):
    """The tiny configuration as shipped: 30 steps, checkpoints and validation every 15."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    rec = Recorder()
    cfg = tiny()
    result = train(cfg, out, data_root=tiny_root, callbacks=[rec], progress_bar=False)
    return out, rec, cfg, result


@pytest.mark.slow
def test_tiny_configuration_learns(tiny_run):
    _, rec, cfg, result = tiny_run
    assert rec.steps == list(range(cfg.trainer.max_steps)) and result.global_step == cfg.trainer.max_steps
    first, last = np.mean(rec.losses[:5]), np.mean(rec.losses[-5:])
    assert all(math.isfinite(x) for x in rec.losses)
    assert last < 0.9 * first, (first, last, rec.losses)


def test_run_folder_layout(tiny_run):
    out, _, cfg, result = tiny_run
    assert sorted(p.name for p in out.glob("*.ckpt")) == ["last.ckpt", "step00000015.ckpt", "step00000030.ckpt"]
    assert result.last_checkpoint == out / "last.ckpt"
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.ckpt.*"))
    assert load_config(out / "config.yaml") == cfg  # resolved configuration beside the checkpoints
    assert checkpoint_config(out / "last.ckpt") == cfg
    assert read_checkpoint(out / "last.ckpt")["global_step"] == 30
    run = (out / "run.yaml").read_text()
    assert "data_root" in run and "torch" in run
    # validation grids: one row per sample, columns composite | mask | output | harmonized | real
    for step in (15, 30):
        with Image.open(out / "images" / f"val_step{step:08d}.png") as im:
            assert im.size == (5 * 66 + 2, 4 * 66 + 2)
    # every loss term and the validation metrics are in the CSV log
    rows = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    columns = set(rows[0])
    for key in ("train/l1", "train/triplet_background", "train/triplet_foreground", "train/loss",
                "val/mse", "val/psnr", "val/fmse", "val/input_mse", "val/mse_ratio", "val/mse_composited"):
        assert key in columns, key
    val = [r for r in rows if r["val/mse"]]
    assert len(val) == 2 and all(float(r["val/input_mse"]) > 0 for r in val)


def test_validation_metrics_agree_with_bargainnet_metrics(tiny_run, tiny_root):
    """val/mse of the last validation = mean per-image published MSE of the checkpoint's output."""
    from bargainnet.data.iharmony4 import IHarmony4Dataset
    from bargainnet.data.transforms import test_transform
    from bargainnet.evaluation.metrics import image_metrics

    out, _, cfg, result = tiny_run
    model = model_from_checkpoint(out / "last.ckpt")
    ds = IHarmony4Dataset(tiny_root, "test", transform=test_transform(64), cache=None)
    per = []
    with torch.no_grad():
        for item in ds:
            o = model(item["composite"][None], item["mask"][None])[0]
            per.append(image_metrics(o, item["real"], item["mask"], "published")["mse"])
    assert result.metrics["val/mse"] == pytest.approx(np.mean(per), rel=1e-4)


@pytest.mark.slow
def test_resume_continues_the_step_count_and_reproduces_the_losses(tiny_root, tmp_path):
    cfg = tiny("trainer.max_steps=6", "trainer.ckpt_every_n_steps=3", "trainer.val_every_n_steps=3",
               "trainer.deterministic=true", "trainer.keep_last_k=1", "data.batch_size=2")
    whole = Recorder()
    train(cfg, tmp_path / "whole", data_root=tiny_root, callbacks=[whole], **QUIET)

    first = Recorder()
    train(tiny("trainer.max_steps=3", "trainer.ckpt_every_n_steps=3", "trainer.val_every_n_steps=3",
               "trainer.deterministic=true", "trainer.keep_last_k=1", "data.batch_size=2"),
          tmp_path / "split", data_root=tiny_root, callbacks=[first], **QUIET)
    assert first.steps == [0, 1, 2]
    with pytest.raises(OutputError, match="--resume auto"):
        train(cfg, tmp_path / "split", data_root=tiny_root, **QUIET)
    second = Recorder()
    result = train(cfg, tmp_path / "split", data_root=tiny_root, resume="auto", callbacks=[second], **QUIET)

    assert second.steps == [3, 4, 5] and result.global_step == 6
    assert first.losses + second.losses == whole.losses  # bit-identical on one machine
    a = model_from_checkpoint(tmp_path / "whole" / "last.ckpt").state_dict()
    b = model_from_checkpoint(tmp_path / "split" / "last.ckpt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # keep_last_k=1: the step-3 checkpoint was replaced by step 6
    assert sorted(p.name for p in (tmp_path / "split").glob("*.ckpt")) == ["last.ckpt", "step00000006.ckpt"]
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


def test_resume_auto_in_an_empty_folder_starts_fresh(tiny_root, tmp_path):
    rec = Recorder()
    train(tiny("trainer.max_steps=1", "trainer.val_every_n_steps=0", "data.batch_size=2"), tmp_path / "r",
          data_root=tiny_root, resume="auto", callbacks=[rec], **QUIET)
    assert rec.steps == [0]


class Poison(L.Callback):
    """Make the model produce NaN (weights) or NaN gradients from step ``at`` on."""

    def __init__(self, at: int, where: str):
        self.at, self.where = at, where

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step != self.at:
            return
        p = next(pl_module.model.generator.parameters())
        if self.where == "weights":
            with torch.no_grad():
                p.fill_(float("nan"))
        else:
            p.register_hook(lambda g: g * float("nan"))


@pytest.mark.slow
@pytest.mark.parametrize("where, words", [("weights", "the loss is not finite"), ("gradients", "gradient norm is nan")])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_root, tmp_path, where, words):
    cfg = tiny("trainer.max_steps=10", "trainer.ckpt_every_n_steps=2", "trainer.val_every_n_steps=0",
               "trainer.keep_last_k=-1", "data.batch_size=2")
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, tmp_path, data_root=tiny_root, callbacks=[Poison(3, where)], **QUIET)
    message = str(err.value)
    assert words in message and "step 4" in message and "last.ckpt" in message and "--resume auto" in message
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["last.ckpt", "step00000002.ckpt"]
    ckpt = read_checkpoint(tmp_path / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


ABLATIONS = sorted(CONFIGS.glob("ablation_*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_each_ablation_builds_and_runs_a_step(path, tiny_root, tmp_path):
    full = load_config(path)
    counts = BargainNet(full.model).num_parameters()  # the full-size model builds
    assert counts["encoder"] == 3_919_376
    if path.stem == "ablation_3_full":
        assert counts["generator"] == 54_776_324  # docs/design.md §1
    small = load_config(path, ["model.ngf=8", "model.num_downs=5", "model.code_dim=8", "data.size=64",
                               "data.batch_size=2", "data.num_workers=0", "trainer.max_steps=1",
                               "trainer.val_every_n_steps=0", "trainer.accelerator=cpu", "trainer.devices=1"])
    torch.manual_seed(0)
    before = BargainNet(small.model).state_dict()  # train() seeds with trainer.seed: same init
    rec = Recorder()
    train(small, tmp_path, data_root=tiny_root, callbacks=[rec], **QUIET)
    assert rec.steps == [0] and math.isfinite(rec.losses[0])
    after = model_from_checkpoint(tmp_path / "last.ckpt").state_dict()
    changed = {k.split(".")[0] for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])}
    uses_encoder = small.model.use_code or small.loss.background_triplet or small.loss.foreground_triplet
    assert changed == ({"generator", "encoder"} if uses_encoder else {"generator"})


def test_training_stream_is_a_function_of_the_position(tiny_root):
    """Items depend on (seed, position) only — the basis of exact resume."""
    from bargainnet.data.iharmony4 import IHarmony4Dataset
    from bargainnet.data.transforms import train_transform

    t = train_transform(64)
    ds = PositionDataset(IHarmony4Dataset(tiny_root, "train", transform=t), t, seed=3)
    again = PositionDataset(IHarmony4Dataset(tiny_root, "train", transform=t), t, seed=3)
    for pos in (0, 5, 13, 21):
        a, b = ds[pos], again[pos]
        assert a["name"] == b["name"] and torch.equal(a["composite"], b["composite"]) and torch.equal(a["mask"], b["mask"])
    n = len(ds.source)
    assert sorted(ds[p]["name"] for p in range(n)) == sorted(t.name for t in ds.source.items)  # an epoch = a permutation
    # a stream's sample at a position is fixed too
    from bargainnet.data.sources import procedural_photos
    from bargainnet.data.synthesis import CompositeStream

    stream = PositionDataset(CompositeStream(procedural_photos(4, 96, 0), size=64), seed=3)
    a, b, c = stream[7], stream[7], stream[8]
    assert torch.equal(a["composite"], b["composite"]) and torch.equal(a["real"], b["real"]) and a["name"] == b["name"]
    assert not torch.equal(a["composite"], c["composite"])
    # the sampler gives each rank its own slice of every step, from the restored step on
    s0 = PositionSampler(2, rank=0, world=2, start_step=lambda: 3)
    s1 = PositionSampler(2, rank=1, world=2, start_step=lambda: 3)
    it0, it1 = iter(s0), iter(s1)
    assert [next(it0) for _ in range(4)] == [12, 13, 16, 17]
    assert [next(it1) for _ in range(4)] == [14, 15, 18, 19]


def test_learning_rate_schedules():
    o = load_config(None, ["optim.schedule=cosine", "optim.warmup_steps=10", "optim.min_lr_ratio=0.1"]).optim
    assert lr_factor(0, o, 110) == pytest.approx(0.1)
    assert lr_factor(9, o, 110) == pytest.approx(1.0)
    assert lr_factor(60, o, 110) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, o, 110) == pytest.approx(0.1)
    o = load_config(None, ["optim.schedule=linear", "optim.decay_start=0.5"]).optim
    assert [lr_factor(s, o, 100) for s in (0, 49, 50, 75, 100)] == pytest.approx([1, 1, 1, 0.5, 0])
    o = load_config(None, ["optim.schedule=step", "optim.milestones=[10, 20]", "optim.gamma=0.5"]).optim
    assert [lr_factor(s, o, 100) for s in (9, 10, 19, 20)] == pytest.approx([1, 0.5, 0.5, 0.25])
    o = load_config(None).optim
    assert lr_factor(12345, o, 100) == 1.0  # published: constant


@pytest.mark.slow
def test_max_hours_stops_with_a_final_checkpoint(tiny_root, tmp_path):
    cfg = tiny("trainer.max_steps=1000", "trainer.max_hours=0.0005", "trainer.val_every_n_steps=0",
               "trainer.ckpt_every_n_steps=1000", "data.batch_size=2")
    result = train(cfg, tmp_path, data_root=tiny_root, **QUIET)
    assert 0 < result.global_step < 1000
    assert read_checkpoint(tmp_path / "last.ckpt")["global_step"] == result.global_step
    assert (tmp_path / f"step{result.global_step:08d}.ckpt").is_file()


def test_learning_curve_script(tiny_run, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_learning_curve", REPO / "benchmarks" / "plot_learning_curve.py")
    plc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plc)
    out, _, _, result = tiny_run
    rows = plc.read_logs(out)
    assert max(rows) == 30 and rows[15]["val/mse"] > 0 and "train/l1" in rows[5]
    png = tmp_path / "curve.png"
    plc.plot(rows, png, "tiny", smooth=2)
    with Image.open(png) as im:
        assert im.size[0] > 500
    text = plc.table(rows)
    assert text.count("\n") == 4 and f"{result.metrics['val/mse']:.1f}" in text  # header, rule, 2 validations


@pytest.mark.slow
def test_checkpoints_with_a_schedule_load_weights_only_and_resume(tiny_root, tmp_path):
    """A scheduled run's checkpoints hold no pickled objects: read_checkpoint/export and --resume work."""
    overrides = ("optim.schedule=cosine", "optim.warmup_steps=1", "trainer.val_every_n_steps=0",
                 "trainer.ckpt_every_n_steps=2", "data.batch_size=2")
    train(tiny("trainer.max_steps=2", *overrides), tmp_path / "r", data_root=tiny_root, **QUIET)
    ckpt = torch.load(tmp_path / "r" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["lr_schedulers"][0]["lr_lambdas"][0]["schedule"] == "cosine"
    result = train(tiny("trainer.max_steps=4", *overrides), tmp_path / "r", data_root=tiny_root, resume="auto", **QUIET)
    assert result.global_step == 4
    model_from_checkpoint(tmp_path / "r" / "last.ckpt")


def test_init_weights_starts_a_fresh_run_from_a_weights_file(tiny_root, tmp_path):
    from bargainnet.errors import InputError
    from bargainnet.models.convert import save_weights
    from bargainnet.models.registry import create_model

    cfg = tiny("trainer.max_steps=1", "trainer.val_every_n_steps=0", "data.batch_size=2")
    torch.manual_seed(123)
    start = create_model(cfg.architecture, cfg.model)
    network = {k: v.clone() for k, v in start.state_dict().items()}
    # a strength head fits the source network's outputs only: a fine-tune starts without it
    from bargainnet.models.strength_head import StrengthHead, StrengthHeadConfig, feature_count

    count = feature_count(cfg.model.code_dim)
    start.strength_head = StrengthHead(StrengthHeadConfig(columns=tuple(range(count)), features=count, heads=1))
    save_weights(start, tmp_path / "start.safetensors")

    class FirstWeights(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    seen = FirstWeights()
    train(cfg, tmp_path / "r", data_root=tiny_root, init_weights=tmp_path / "start.safetensors", callbacks=[seen], **QUIET)
    assert seen.state.keys() == network.keys()
    for k, v in network.items():
        assert torch.equal(seen.state[k], v), k
    other = create_model(cfg.architecture, dataclasses.replace(cfg.model, ngf=cfg.model.ngf * 2))
    save_weights(other, tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="ngf"):
        train(cfg, tmp_path / "r2", data_root=tiny_root, init_weights=tmp_path / "other.safetensors", **QUIET)
    with pytest.raises(InputError, match="not found"):
        train(cfg, tmp_path / "r3", data_root=tiny_root, init_weights=tmp_path / "none.safetensors", **QUIET)


def test_init_weights_from_an_rgb_model_starts_an_affine_output_run(tiny_root, tmp_path):
    from bargainnet.errors import InputError
    from bargainnet.models.convert import save_weights
    from bargainnet.models.registry import create_model

    cfg = tiny("trainer.max_steps=1", "trainer.val_every_n_steps=0", "data.batch_size=2")
    torch.manual_seed(5)
    rgb = create_model(cfg.architecture, cfg.model)
    save_weights(rgb, tmp_path / "rgb.safetensors")
    affine = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, output="affine"))
    model = create_model(affine.architecture, affine.model)
    _load_initial_weights(model, tmp_path / "rgb.safetensors")
    head = {"generator.model.model.3.weight", "generator.model.model.3.bias"}
    for k, v in rgb.state_dict().items():
        if k not in head:
            assert torch.equal(model.state_dict()[k], v), k
    assert all(not model.state_dict()[k].any() for k in head)  # the identity start
    save_weights(model, tmp_path / "affine.safetensors")
    with pytest.raises(InputError, match="output"):  # not the other way round
        _load_initial_weights(create_model(cfg.architecture, cfg.model), tmp_path / "affine.safetensors")


def _grown_from_plain(tmp_path, seed, **grown):
    """A plain affine tiny model (random head, saved as plain.safetensors), the model with
    ``grown`` configuration started from it by --init-weights, and an input pair for both."""
    from bargainnet.models.convert import save_weights
    from bargainnet.models.registry import create_model

    cfg = tiny()
    torch.manual_seed(seed)
    plain = create_model(cfg.architecture, dataclasses.replace(cfg.model, output="affine")).eval()
    torch.nn.init.normal_(plain.generator.output_layer.weight, 0.0, 0.05)
    save_weights(plain, tmp_path / "plain.safetensors")
    model = create_model(cfg.architecture, dataclasses.replace(cfg.model, output="affine", **grown)).eval()
    _load_initial_weights(model, tmp_path / "plain.safetensors")
    g = torch.Generator().manual_seed(0)
    composite = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:40, 20:50] = 1
    return plain, model, composite, mask


def test_init_weights_from_a_model_without_the_hint_starts_a_hint_run_as_that_model(tmp_path):
    from bargainnet.errors import InputError
    from bargainnet.models.convert import save_weights

    plain, hinted, composite, mask = _grown_from_plain(tmp_path, 7, hint="stats")
    first = "generator.model.model.0.weight"
    for k, v in plain.state_dict().items():
        if k != first:
            assert torch.equal(hinted.state_dict()[k], v), k
    grown, old = hinted.state_dict()[first], plain.state_dict()[first]
    assert torch.equal(grown[:, :4], old[:, :4]) and torch.equal(grown[:, 7:], old[:, 4:]) and not grown[:, 4:7].any()
    with torch.no_grad():  # the same model until training moves the hint's weights
        assert torch.equal(hinted(composite, mask), plain(composite, mask))
    save_weights(hinted, tmp_path / "hinted.safetensors")
    with pytest.raises(InputError, match="hint"):  # not the other way round
        _load_initial_weights(plain, tmp_path / "hinted.safetensors")


def test_the_two_affine_outputs_share_every_tensor(tiny_root, tmp_path):
    from bargainnet.models.convert import save_weights
    from bargainnet.models.registry import create_model

    cfg = tiny()
    torch.manual_seed(6)
    local = create_model(cfg.architecture, dataclasses.replace(cfg.model, output="affine"))
    torch.nn.init.normal_(local.generator.output_layer.weight, 0.0, 0.05)
    save_weights(local, tmp_path / "local.safetensors")
    pooled = create_model(cfg.architecture, dataclasses.replace(cfg.model, output="affine_global"))
    _load_initial_weights(pooled, tmp_path / "local.safetensors")
    for k, v in local.state_dict().items():
        assert torch.equal(pooled.state_dict()[k], v), k


def test_distillation_learns_the_teachers_output_and_needs_a_fitting_teacher(tiny_root, tmp_path):
    from bargainnet.errors import InputError
    from bargainnet.models.convert import save_weights
    from bargainnet.models.registry import create_model

    cfg = tiny("trainer.max_steps=25", "trainer.val_every_n_steps=0", "data.batch_size=2", "loss.distill=1.0",
               "loss.distill_codes=1.0", "model.encoder_width=8")
    torch.manual_seed(9)
    teacher_cfg = dataclasses.replace(cfg.model, ngf=12, encoder_width=16)
    teacher = create_model(cfg.architecture, teacher_cfg)
    with torch.no_grad():  # the teacher's code is one vector of norm 2 (at initialisation codes are ~1e-3)
        teacher.encoder.convs.weight.zero_()
        teacher.encoder.convs.bias.copy_(torch.linspace(-1, 1, cfg.model.code_dim) * 1.2)
    save_weights(teacher, tmp_path / "teacher.safetensors")
    rec = Recorder()
    train(cfg, tmp_path / "r", data_root=tiny_root, teacher=tmp_path / "teacher.safetensors", callbacks=[rec], **QUIET)
    assert all(math.isfinite(x) for x in rec.losses)
    assert np.mean(rec.losses[-5:]) < 0.8 * np.mean(rec.losses[:5]), rec.losses

    # the student now reproduces the teacher (a random generator) better than the real images, and its code
    from bargainnet.data.iharmony4 import IHarmony4Dataset
    from bargainnet.data.transforms import test_transform

    student = model_from_checkpoint(tmp_path / "r" / "last.ckpt").eval()
    teacher.eval()
    ds = IHarmony4Dataset(tiny_root, "train", transform=test_transform(64), cache=None)
    batch = [ds[i] for i in range(4)]
    comp, mask, real = (torch.stack([b[k] for b in batch]) for k in ("composite", "mask", "real"))
    with torch.no_grad():
        s, t = student(comp, mask), teacher(comp, mask)
        z_s, z_t = student.domain_code(comp, 1 - mask), teacher.domain_code(comp, 1 - mask)
    fg = mask.expand_as(s).bool()
    assert (s - t).abs()[fg].mean() < 0.5 * (s - real).abs()[fg].mean()
    assert (z_s - z_t).norm() < 0.5 * z_t.norm()

    with pytest.raises(InputError, match="--teacher"):
        train(cfg, tmp_path / "r2", data_root=tiny_root, **QUIET)
    plain = tiny("trainer.max_steps=1", "trainer.val_every_n_steps=0")
    with pytest.raises(InputError, match="both 0"):
        train(plain, tmp_path / "r3", data_root=tiny_root, teacher=tmp_path / "teacher.safetensors", **QUIET)
    other = create_model(cfg.architecture, dataclasses.replace(cfg.model, code_dim=4))
    save_weights(other, tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="code lengths"):
        train(cfg, tmp_path / "r4", data_root=tiny_root, teacher=tmp_path / "other.safetensors", **QUIET)


def test_init_weights_from_a_narrower_model_starts_a_wider_run_as_that_model(tmp_path):
    from bargainnet.errors import InputError
    from bargainnet.models.convert import save_weights
    from bargainnet.models.registry import create_model

    cfg = tiny()
    torch.manual_seed(11)
    narrow = create_model(cfg.architecture, dataclasses.replace(cfg.model, output="affine"))
    torch.nn.init.normal_(narrow.generator.output_layer.weight, 0.0, 0.05)
    for m in narrow.modules():  # statistics that differ per channel, so a misplaced channel shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(9)
    save_weights(narrow, tmp_path / "narrow.safetensors")
    wide_cfg = dataclasses.replace(cfg.model, output="affine", ngf=cfg.model.ngf + 8)
    wide = create_model(cfg.architecture, wide_cfg)
    _load_initial_weights(wide, tmp_path / "narrow.safetensors")
    assert sum(p.numel() for p in wide.generator.parameters()) > sum(p.numel() for p in narrow.generator.parameters())
    for k, v in narrow.encoder.state_dict().items():
        assert torch.equal(wide.encoder.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    composite = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:40, 20:50] = 1
    narrow.eval(), wide.eval()
    with torch.no_grad():  # the same function until training uses the added channels
        torch.testing.assert_close(wide(composite, mask), narrow(composite, mask), atol=1e-5, rtol=0)
    wide.train()
    wide(composite, mask).square().sum().backward()
    head = wide.generator.output_layer.weight  # (in, out, kh, kw); the added inputs start at zero
    added = torch.cat([head[cfg.model.ngf : wide_cfg.ngf], head[wide_cfg.ngf + cfg.model.ngf :]])
    added_grad = torch.cat([head.grad[cfg.model.ngf : wide_cfg.ngf], head.grad[wide_cfg.ngf + cfg.model.ngf :]])
    assert not added.any() and added_grad.abs().sum() > 0  # ... and training reaches them
    save_weights(wide, tmp_path / "wide.safetensors")
    with pytest.raises(InputError, match="ngf"):  # not the other way round
        _load_initial_weights(narrow, tmp_path / "wide.safetensors")


def test_init_weights_from_a_model_without_semantic_features_starts_a_semantic_run_as_that_model(tmp_path):
    from bargainnet.errors import InputError
    from bargainnet.models.backbone import imagenet_lite0_state
    from bargainnet.models.convert import save_weights

    plain, semantic, composite, mask = _grown_from_plain(tmp_path, 3, semantic="lite0")
    imagenet = imagenet_lite0_state()
    for k, v in imagenet.items():  # ImageNet's weights, not a random start
        assert torch.equal(semantic.backbone.state_dict()[k], v), k
    first, extra = "generator.model.model.0.weight", semantic.config.semantic_dim
    grown, old = semantic.state_dict()[first], plain.state_dict()[first]
    assert torch.equal(grown[:, :4], old[:, :4]) and torch.equal(grown[:, 4 + extra :], old[:, 4:])
    # G reads the new maps with random weights, the maps start at zero (a zero projection) ...
    assert grown[:, 4 : 4 + extra].abs().min() > 0 and not semantic.semantic_projection.weight.any()
    with torch.no_grad():  # ... so it is the same model
        torch.testing.assert_close(semantic(composite, mask), plain(composite, mask), atol=1e-5, rtol=0)
    semantic.train()
    semantic(composite, mask).square().sum().backward()  # and the projection learns from the first step
    assert semantic.semantic_projection.weight.grad.abs().sum() > 0
    save_weights(semantic, tmp_path / "semantic.safetensors")
    with pytest.raises(InputError, match="semantic"):  # not the other way round
        _load_initial_weights(plain, tmp_path / "semantic.safetensors")


def test_a_fresh_semantic_run_starts_from_imagenet_weights(tiny_root, tmp_path):
    from bargainnet.models.backbone import imagenet_lite0_state

    cfg = tiny("trainer.max_steps=1", "trainer.val_every_n_steps=0", "data.batch_size=2", "model.semantic=lite0")
    train(cfg, tmp_path / "r", data_root=tiny_root, **QUIET)
    trained = model_from_checkpoint(tmp_path / "r" / "last.ckpt")
    imagenet = imagenet_lite0_state()
    for k, v in imagenet.items():  # frozen: still exactly ImageNet's after a step
        assert torch.equal(trained.backbone.state_dict()[k], v), k

"""Issue 12 through the CLI: missing extras, a runtime without Lightning, one inharmony scale,
results that got worse, --quality, announced folders, score's default CSV, consistent help."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from bargainnet.cli import build_parser, main
from bargainnet.commands.common import SIZE_HELP
from bargainnet.inference import Harmonizer
from bargainnet.inference.figures import _title

REPO = Path(__file__).resolve().parents[2]
H, W = 90, 130



def write_pair(folder: Path, stem="c", ext=".png"):
    img = np.asarray(Image.fromarray(skdata.coffee()).resize((W, H), Image.BILINEAR))
    mask = np.zeros((H, W), np.uint8)
    mask[20:70, 30:100] = 255
    Image.fromarray(img).save(folder / f"{stem}{ext}", quality=95)
    Image.fromarray(mask).save(folder / f"{stem}_mask.png")
    return folder / f"{stem}{ext}", folder / f"{stem}_mask.png"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- extras ----------------------------------------------------------------------------------


def _block(monkeypatch, name):
    """Make ``import name`` (and its submodules) fail, as when the extra is not installed."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        monkeypatch.setitem(sys.modules, key, None)
    monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    "module, argv, extra",
    [
        ("gradio", ["serve"], "web"),
        ("lightning", ["train", "--data", "."], "train"),
        ("lightning", ["export-weights", ".", "-o", "x.safetensors"], "train"),
        ("onnx", ["export-onnx", "-o", "x.onnx"], "onnx"),
        ("onnxruntime", ["harmonize", "c.png", "c_mask.png", "-o", "o.png", "--backend", "onnxruntime"], "onnx"),
        ("onnxruntime", ["harmonize", "c.png", "c_mask.png", "-o", "o.png", "--weights", "m.onnx"], "onnx"),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_pip_command(module, argv, extra, weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_pair(tmp_path)
    Path("m.onnx").write_bytes(b"x")
    _block(monkeypatch, module)
    if "--weights" not in argv and argv[0] in ("harmonize", "export-onnx"):
        argv = [*argv, "--weights", weights]
    code, out, err = run(argv, capsys)
    assert code == 3
    assert len(err.strip().splitlines()) == 1, err
    assert f'pip install "bargainnet[{extra}]"' in err and f"needs {module}" in err
    assert not list(tmp_path.glob("o.png")) and not list(tmp_path.glob("x.*"))


def test_harmonize_score_and_evaluate_run_without_lightning(weights, tmp_path):
    """A fresh interpreter where Lightning, TensorBoard, ONNX and Gradio cannot be imported."""
    comp, mask = write_pair(tmp_path)
    script = f"""
import sys
for name in ("lightning", "lightning_fabric", "pytorch_lightning", "tensorboard", "onnx", "onnxruntime", "gradio"):
    sys.modules[name] = None
import bargainnet
from bargainnet.cli import main
assert main(["harmonize", {str(comp)!r}, {str(mask)!r}, "-o", {str(tmp_path / 'o.png')!r}, "--weights", {weights!r}]) == 0
assert main(["score", {str(comp)!r}, {str(mask)!r}, "--weights", {weights!r}]) == 0
import bargainnet.evaluation, bargainnet.evaluation.evaluator, bargainnet.evaluation.analysis, bargainnet.commands.evaluate
from bargainnet.inference import Harmonizer
assert main(["evaluate", "--help"]) == 0
"""
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode in (0,), proc.stderr[-2000:]
    assert (tmp_path / "o.png").is_file()


def test_runtime_dependencies_leave_out_the_extras():
    text = (REPO / "pyproject.toml").read_text()
    runtime = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    for name in ("lightning", "tensorboard", "onnx", "gradio"):
        assert name not in runtime
    for extra in ("train", "onnx", "web", "test", "dev", "bench"):
        assert re.search(rf"^{extra} = \[", text, re.M), extra


# -- one inharmony scale ---------------------------------------------------------------------


def test_score_is_the_same_whatever_the_working_size(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    distances = []
    for size in (64, 96, 160):
        code, out, _ = run(["score", comp, mask, "--weights", weights, "--size", size], capsys)
        assert code == 0
        distances.append(float(re.search(r"inharmony distance ([0-9.]+)", out).group(1)))
    assert max(distances) - min(distances) < 1e-4, distances
    # and the API agrees with the CLI
    assert Harmonizer.from_pretrained(weights, size=96).score(comp, mask).distance == pytest.approx(distances[0], abs=1e-4)


# -- results that got worse ------------------------------------------------------------------


@pytest.fixture
def always_worse(monkeypatch):
    """Every harmonization raises the inharmony by 1 (the tiny model's changes are random)."""
    real = Harmonizer._canonical_after

    def worse(self, *args):
        return real(self, *args) + 100.0

    monkeypatch.setattr(Harmonizer, "_canonical_after", worse)


def test_a_result_that_got_worse_is_flagged(weights, tmp_path, capsys, always_worse):
    comp, mask = write_pair(tmp_path)
    code, out, _ = run(["harmonize", comp, mask, "-o", tmp_path / "o.png", "--weights", weights], capsys)
    assert code == 0 and "WORSE: harmonizing raised the inharmony" in out
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), np.asarray(Image.open(comp)))


def test_keep_if_worse_writes_the_input_unchanged(weights, tmp_path, capsys, always_worse):
    comp, mask = write_pair(tmp_path)
    code, out, _ = run(["harmonize", comp, mask, "-o", tmp_path / "o.png", "--weights", weights, "--keep-if-worse"], capsys)
    assert code == 0 and "input was kept unchanged" in out
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), np.asarray(Image.open(comp)))
    # the Python API
    result = Harmonizer.from_pretrained(weights).harmonize(comp, mask, keep_if_worse=True)
    assert result.got_worse and result.kept
    np.testing.assert_array_equal(np.asarray(result.image), np.asarray(Image.open(comp)))


def test_folder_summary_lists_what_got_worse(weights, tmp_path, capsys, always_worse):
    src = tmp_path / "in"
    src.mkdir()
    write_pair(src, "a")
    write_pair(src, "b")
    code, out, err = run(["harmonize", "--input-dir", src, "--output-dir", tmp_path / "out", "--weights", weights], capsys)
    assert code == 0
    assert "2 got worse, written anyway; --keep-if-worse keeps the input: a.png, b.png" in out
    assert "a.png: inharmony" in err and "WORSE" in err
    code, out, _ = run(["harmonize", "--input-dir", src, "--output-dir", tmp_path / "kept", "--weights", weights,
                        "--keep-if-worse"], capsys)
    assert code == 0 and "2 got worse, input kept (--keep-if-worse)" in out


def test_score_after_flags_got_worse(weights, tmp_path, capsys, always_worse):
    src = tmp_path / "in"
    src.mkdir()
    write_pair(src, "a")
    code, out, _ = run(["score", src, "--after", "--weights", weights, "--quiet"], capsys)
    assert code == 0 and "(1 got worse when harmonized)" in out and "(WORSE)" in out
    rows = list(csv.DictReader((tmp_path / "in_inharmony.csv").open()))
    assert rows[0]["got_worse"] == "True"


# -- smaller items ---------------------------------------------------------------------------


def test_quality_sets_the_jpeg_quality(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    for q in (30, 95):
        assert run(["harmonize", comp, mask, "-o", tmp_path / f"q{q}.jpg", "--weights", weights, "--quality", q], capsys)[0] == 0
    assert (tmp_path / "q30.jpg").stat().st_size < (tmp_path / "q95.jpg").stat().st_size


def test_lossless_output_keeps_the_background_bit_identical(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    assert run(["harmonize", comp, mask, "-o", tmp_path / "o.png", "--weights", weights], capsys)[0] == 0
    bg = np.asarray(Image.open(mask)) < 128
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png"))[bg], np.asarray(Image.open(comp))[bg])


def test_new_output_folders_are_announced(weights, tmp_path, capsys):
    comp, mask = write_pair(tmp_path)
    code, _, err = run(["harmonize", comp, mask, "-o", tmp_path / "new" / "o.png", "--weights", weights,
                        "--figure", tmp_path / "figs" / "f.png"], capsys)
    assert code == 0
    assert f"created the output folder {tmp_path / 'new'}" in err
    assert f"created the figure folder {tmp_path / 'figs'}" in err
    code, _, err = run(["harmonize", comp, mask, "-o", tmp_path / "new" / "o2.png", "--weights", weights], capsys)
    assert code == 0 and "created" not in err


def test_score_folder_csv_goes_beside_the_inputs(weights, tmp_path, capsys, monkeypatch):
    src = tmp_path / "shots"
    src.mkdir()
    write_pair(src, "a")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(["score", src, "--weights", weights, "--quiet"], capsys)
    assert code == 0 and f"wrote {tmp_path / 'shots_inharmony.csv'}" in out
    assert (tmp_path / "shots_inharmony.csv").is_file() and not any(elsewhere.iterdir())


def test_folder_errors_name_the_path_once(weights, tmp_path, capsys):
    src = tmp_path / "fold"
    src.mkdir()
    write_pair(src, "a")
    write_pair(src, "b")
    (src / "b.png").write_bytes(b"not an image")
    code, _, err = run(["harmonize", "--input-dir", src, "--output-dir", tmp_path / "out", "--weights", weights], capsys)
    assert code == 5
    line = next(l for l in err.splitlines() if "b.png" in l)
    assert line.count("b.png") == 1, line
    code, _, err = run(["score", src, "--weights", weights, "--quiet"], capsys)
    line = next(l for l in err.splitlines() if "b.png" in l)
    assert code == 5 and line.count("b.png") == 1, line


def test_size_help_is_the_same_everywhere():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {}
    for name in ("harmonize", "score", "serve", "export-onnx"):
        action = next(a for a in sub.choices[name]._actions if "--size" in a.option_strings)
        helps[name] = action.help
    assert all(h.startswith(SIZE_HELP) for h in helps.values()), helps


def test_paste_figure_titles_name_the_cutout():
    assert _title("a/b/cut.png on c/bg.jpg") == "cut.png on bg.jpg"
    assert _title("/x/y/composite.jpg") == "composite.jpg"


def test_paste_mode_figure_names_both_files(weights, tmp_path, capsys):
    img = np.asarray(Image.fromarray(skdata.coffee()).resize((W, H), Image.BILINEAR))
    cut = np.dstack([img[:30, :40], np.full((30, 40), 255, np.uint8)])
    Image.fromarray(cut).save(tmp_path / "cutout.png")
    Image.fromarray(img).save(tmp_path / "bg.png")
    code, out, _ = run(["harmonize", "--foreground", tmp_path / "cutout.png", "--background", tmp_path / "bg.png",
                        "-o", tmp_path / "o.png", "--figure", tmp_path / "f.png", "--weights", weights], capsys)
    assert code == 0 and (tmp_path / "f.png").is_file()
    assert "cutout.png on" in out

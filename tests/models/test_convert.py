import subprocess
import sys

import pytest
import torch

from bargainnet.errors import InputError
from bargainnet.models.bargainnet import BargainNet
from bargainnet.models.convert import load_published, load_weights, read_metadata, save_weights

from tests.conftest import SHARED_FIXTURES, require_shared

PARITY = SHARED_FIXTURES / "official_parity_ngf8.pt"


@pytest.fixture(scope="module")
def parity():
    require_shared(PARITY)
    return torch.load(PARITY, weights_only=True)


@pytest.fixture
def published_files(tmp_path, parity):
    g, e = tmp_path / "latest_net_G.pth", tmp_path / "latest_net_E.pth"
    torch.save(parity["G_state_dict"], g)
    torch.save(parity["E_state_dict"], e)
    return g, e


def test_parity_with_published_implementation(published_files, parity):
    model = load_published(*published_files)
    assert model.config.ngf == 8 and model.config.code_dim == 16 and model.config.num_downs == 8
    with torch.no_grad():
        out = model.training_forward(parity["composite"], parity["mask"], parity["real"])
    pairs = {"z_b": "z_b", "harmonized": "harmonized", "z_f": "z_f_real", "z_f_harm": "z_f_harm", "z_f_comp": "z_f_comp"}
    for ours, theirs in pairs.items():
        diff = (out[ours] - parity[theirs].reshape(out[ours].shape)).abs().max().item()
        assert diff <= 1e-5, (ours, diff)


def test_safetensors_round_trip_describes_itself(tmp_path, published_files, parity):
    model = load_published(*published_files)
    path = save_weights(model, tmp_path / "model.safetensors", trained_on="fixture")
    meta = read_metadata(path)
    assert meta["format"] == "bargainnet" and meta["trained_on"] == "fixture"
    again = load_weights(path)
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(again(parity["composite"], parity["mask"]), model(parity["composite"], parity["mask"]))


def test_fp16_weights_stay_close(tmp_path):
    model = BargainNet(ngf=4, num_downs=6, code_dim=8).eval()
    path = save_weights(model, tmp_path / "m.safetensors", dtype=torch.float16)
    half = load_weights(path)
    x, m = torch.rand(1, 3, 64, 64) * 2 - 1, torch.zeros(1, 1, 64, 64)
    m[..., 10:40, 10:40] = 1
    with torch.no_grad():
        assert (half(x, m) - model(x, m)).abs().max() < 2e-2


def test_dovenet_generator_loads_as_mask_only_model(tmp_path):
    dovenet = BargainNet(ngf=8, use_code=False)
    path = tmp_path / "dovenet_G.pth"
    torch.save(dovenet.generator.state_dict(), path)
    model = load_published(path)
    assert model.config.use_code is False and model.config.use_mask is True


def test_wrong_shape_names_first_mismatch(tmp_path, parity):
    state = dict(parity["G_state_dict"])
    state["model.model.1.attention.0.weight"] = torch.zeros(3, 3, 1, 1)
    g = tmp_path / "G.pth"
    torch.save(state, g)
    e = tmp_path / "E.pth"
    torch.save(parity["E_state_dict"], e)
    with pytest.raises(InputError, match=r"model\.model\.1\.attention\.0\.weight.*\(3, 3, 1, 1\)"):
        load_published(g, e)


def test_missing_and_unreadable_checkpoints(tmp_path, parity):
    with pytest.raises(InputError, match="not found"):
        load_published(tmp_path / "nope.pth")
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match="cannot read"):
        load_published(bad)
    g = tmp_path / "G.pth"
    torch.save(parity["G_state_dict"], g)
    with pytest.raises(InputError, match="encoder"):
        load_published(g)  # code-guided generator without its encoder


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(InputError, match="not a bargainnet weights file"):
        load_weights(path)


def test_convert_cli(tmp_path, published_files, parity):
    from bargainnet.cli import main

    out = tmp_path / "converted.safetensors"
    assert main(["convert", "--netG", str(published_files[0]), "--netE", str(published_files[1]), "-o", str(out)]) == 0
    assert load_weights(out).config.ngf == 8
    # refusing to overwrite an input, and a clear message for a missing file (exit 3, no traceback)
    assert main(["convert", "--netG", str(published_files[0]), "--netE", str(published_files[1]), "-o", str(published_files[0])]) == 4
    proc = subprocess.run(
        [sys.executable, "-m", "bargainnet.cli", "convert", "--netG", str(tmp_path / "missing.pth"), "-o", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 3 and "not found" in proc.stderr and "Traceback" not in proc.stderr

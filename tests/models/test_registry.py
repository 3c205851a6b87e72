"""Generator families by name; weights files name their family; one size rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from bargainnet import BargainNet, create_model, load_weights, register_family, save_weights
from bargainnet.errors import InputError
from bargainnet.models import registry
from bargainnet.models.base import ModelConfig, check_size
from bargainnet.models.bargainnet import BargainNetConfig
from bargainnet.models.convert import read_metadata

TINY = dict(ngf=4, num_downs=5, code_dim=8)


def test_create_model_defaults_to_the_paper_model():
    model = create_model(**TINY)
    assert isinstance(model, BargainNet) and model.config.num_downs == 5
    assert isinstance(create_model("bargainnet", BargainNetConfig(**TINY), code_dim=4), BargainNet)
    with pytest.raises(InputError, match="unknown model architecture 'nope'.*bargainnet"):
        create_model("nope")


def test_weights_name_their_architecture_and_old_files_load(tmp_path):
    model = create_model(**TINY)
    path = save_weights(model, tmp_path / "m.safetensors")
    assert read_metadata(path)["architecture"] == "bargainnet"
    assert isinstance(load_weights(path), BargainNet)
    # a file written before the field existed: the paper's model
    from safetensors.torch import load_file, save_file

    meta = read_metadata(path)
    del meta["architecture"]
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata=meta)
    assert isinstance(load_weights(tmp_path / "old.safetensors"), BargainNet)
    meta["architecture"] = "unheard_of"
    save_file(load_file(str(path)), str(tmp_path / "future.safetensors"), metadata=meta)
    with pytest.raises(InputError, match="unknown model architecture 'unheard_of'"):
        load_weights(tmp_path / "future.safetensors")


@dataclass
class _EchoConfig(ModelConfig):
    architecture: ClassVar[str] = "echo_test"
    gain: float = 1.0


class _Echo(torch.nn.Module):
    """A second family: returns the composite (scaled); enough to go through the registry."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config or _EchoConfig()
        self.scale = torch.nn.Parameter(torch.tensor(self.config.gain))


def test_a_registered_family_round_trips_through_a_weights_file(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    register_family("echo_test", _Echo, _EchoConfig)
    model = create_model("echo_test", gain=2.0)
    assert registry.architecture_of(model) == "echo_test"
    path = save_weights(model, tmp_path / "echo.safetensors")
    loaded = load_weights(path)
    assert isinstance(loaded, _Echo) and loaded.config.gain == 2.0
    assert "echo_test" in registry.families()


def test_one_size_rule():
    cfg = BargainNetConfig(**TINY)
    assert cfg.size_multiple == 32 and cfg.default_size == 64
    assert BargainNetConfig().default_size == 256
    assert BargainNetConfig(image_size=128, num_downs=7).default_size == 128
    assert check_size(cfg, 96) == 96 and check_size(cfg) == 64
    with pytest.raises(InputError, match="working size 80 must be a multiple of 32 and at least 64"):
        check_size(cfg, 80)
    with pytest.raises(InputError, match="at least 64"):
        check_size(BargainNetConfig(ngf=4, num_downs=4), 48)


def test_harmonize_with_inharmony_matches_the_separate_calls():
    model = create_model(**TINY).eval()
    composite = torch.rand(2, 3, 64, 64) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 8:40] = 1
    with torch.no_grad():
        harmonized, before, after = model.harmonize_with_inharmony(composite, mask)
        assert torch.allclose(harmonized, model.harmonize(composite, mask), atol=1e-6)
        assert torch.allclose(before, model.inharmony(composite, mask)[0], atol=1e-5)
        assert torch.allclose(after, model.inharmony(harmonized, mask)[0], atol=1e-5)

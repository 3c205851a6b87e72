"""The per-image strength a learned head predicts (``strength="learned"``): the features against
direct computations, the head against its formula, its place in the weights file and the ONNX
metadata, and its use through the Harmonizer and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data as skdata
from skimage.color import rgb2lab

from bargainnet.cli import main
from bargainnet.errors import InputError
from bargainnet.inference import Harmonizer
from bargainnet.inference.learned_strength import colour_stats, features, needs, ring
from bargainnet.models.bargainnet import BargainNet, BargainNetConfig
from bargainnet.models.convert import load_weights, read_metadata, save_weights
from bargainnet.models.strength_head import StrengthHead, StrengthHeadConfig, feature_count

CODE = 8  # the tiny model's code length
COUNT = feature_count(CODE)  # 54 statistics + 3 codes + share + measured = 80
STATS_ONLY = tuple(range(54)) + (COUNT - 2,)


def tiny_head(columns=tuple(range(COUNT)), seed=0) -> StrengthHead:
    torch.manual_seed(seed)
    head = StrengthHead(StrengthHeadConfig(columns=columns, features=COUNT, heads=3, hidden=8))
    with torch.no_grad():
        head.mean.uniform_(-0.5, 0.5)
        head.std.uniform_(0.5, 2.0)
        for p in head.mlps.parameters():
            p.normal_(0, 0.5)
    return head.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Weights files of a tiny model: without a head, with a head reading everything, with one
    reading colour statistics only (recommending "learned")."""
    folder = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    model = BargainNet(BargainNetConfig(ngf=4, num_downs=5, code_dim=CODE)).eval()
    plain = save_weights(model, folder / "plain.safetensors")
    model.strength_head = tiny_head()
    full = save_weights(model, folder / "full.safetensors")
    model.strength_head = tiny_head(STATS_ONLY, seed=1)
    model.inference_settings = {"strength": "learned"}
    stats = save_weights(model, folder / "stats.safetensors")
    return {"plain": plain, "full": full, "stats": stats}


def composite(width=120, height=90, box=(20, 60, 25, 70), gains=(1.2, 0.9, 0.8)):
    photo = np.asarray(Image.fromarray(skdata.coffee()).resize((width, height), Image.BILINEAR))
    mask = np.zeros((height, width), bool)
    mask[box[0] : box[1], box[2] : box[3]] = True
    comp = photo.copy()
    comp[mask] = np.clip(photo[mask] * np.array(gains), 0, 255).astype(np.uint8)
    return comp, mask


# -- the parts -------------------------------------------------------------------------------


def test_features_against_direct_computation():
    rng = np.random.default_rng(0)
    c = rng.random((32, 32, 3)).astype(np.float32)
    o = np.clip(c * 0.8 + 0.1, 0, 1).astype(np.float32)
    m = np.zeros((32, 32), bool)
    m[10:20, 12:22] = True
    codes = rng.normal(size=3 * CODE)
    f = features(c, m, o, CODE, codes=codes, measured=0.65)
    assert f.shape == (COUNT,) and f.dtype == np.float32

    def stats(x):
        lab = np.stack([rgb2lab(p[None, None].astype(np.float64))[0, 0] for p in x]) / 100
        return np.concatenate([x.mean(0), x.std(0), lab.mean(0), lab.std(0)])

    # the ring: background pixels within 6 four-connected steps (a diamond around one pixel)
    dot = np.zeros((32, 32), bool)
    dot[16, 16] = True
    yy, xx = np.mgrid[:32, :32]
    assert (ring(dot) == ((np.abs(yy - 16) + np.abs(xx - 16) <= 6) & ~dot)).all()
    expected_ring = ndimage.binary_dilation(m, iterations=6) & ~m
    assert (ring(m) == expected_ring).all()
    parts = [stats(c[m]), stats(c[~m]), stats(c[expected_ring]), stats(o[m]), (o[m] - c[m]).mean(0), (o[m] - c[m]).std(0)]
    np.testing.assert_allclose(f[:54], np.concatenate(parts), atol=1e-5)
    np.testing.assert_allclose(f[54 : 54 + 3 * CODE], codes, atol=1e-6)
    assert f[-2] == pytest.approx(m.mean()) and f[-1] == pytest.approx(0.65)
    # what is not given stays 0; the ring falls back to the background when there is none
    bare = features(c, m, o, CODE)
    assert not bare[54:-2].any() and bare[-1] == 0
    np.testing.assert_allclose(colour_stats(c[~m]), stats(c[~m]), atol=1e-6)
    assert needs(range(54), CODE) == (False, False)
    assert needs([54], CODE) == (True, False) and needs([COUNT - 1], CODE) == (False, True)


def test_the_head_is_a_bag_of_mlps_on_normalised_columns():
    head = tiny_head(columns=(3, 0, 79))
    x = torch.randn(5, COUNT)
    z = (x[:, [3, 0, 79]] - head.mean) / head.std
    expected = torch.stack([1.5 * torch.sigmoid(mlp(z)[:, 0]) for mlp in head.mlps]).mean(0)
    got = head(x)
    torch.testing.assert_close(got, expected)
    assert ((got >= 0) & (got <= 1.5)).all()
    floored = StrengthHead(StrengthHeadConfig(columns=(3, 0, 79), features=COUNT, heads=3, hidden=8, min_strength=0.4))
    floored.load_state_dict(head.state_dict())
    torch.testing.assert_close(floored(x), torch.stack([0.4 + 1.1 * torch.sigmoid(mlp(z)[:, 0]) for mlp in head.mlps]).mean(0))
    assert (floored(x) >= 0.4).all()
    for bad, match in ((dict(columns=(0, 0), features=COUNT), "distinct"), (dict(columns=(80,), features=COUNT), "below 80"),
                       (dict(columns=(0,), features=COUNT, max_strength=3), "max_strength"),
                       (dict(columns=(0,), features=COUNT, min_strength=1.5), "min_strength < max_strength")):
        with pytest.raises(InputError, match=match):
            StrengthHeadConfig(**bad)


def test_the_head_travels_in_the_weights_file(files, tmp_path):
    model = load_weights(files["full"])
    original = tiny_head()
    for key, value in original.state_dict().items():
        torch.testing.assert_close(model.strength_head.state_dict()[key], value)
    assert load_weights(files["stats"]).strength_head.config.columns == STATS_ONLY
    plain = load_weights(files["plain"])
    assert not hasattr(plain, "strength_head")
    plain.inference_settings = {"strength": "learned"}
    with pytest.raises(InputError, match="no strength head, so it cannot recommend strength 'learned'"):
        save_weights(plain, tmp_path / "no_head.safetensors")
    # a head for another code length is refused with the file's name
    from safetensors.torch import load_file, save_file

    meta = read_metadata(files["full"])
    save_file(load_file(str(files["full"])), str(tmp_path / "odd.safetensors"),
              metadata={**meta, "strength_head": meta["strength_head"].replace(f'"features": {COUNT}', '"features": 104')})
    with pytest.raises(InputError, match="reads 104 features; this model's are 80"):
        load_weights(tmp_path / "odd.safetensors")
    # and in text form, as the ONNX metadata holds it
    copy = StrengthHead(original.config).load_tensors_text(original.tensors_text(), "here")
    x = torch.randn(4, COUNT)
    torch.testing.assert_close(copy(x), original(x))
    with pytest.raises(InputError, match="here: invalid strength head tensors"):
        StrengthHead(original.config).load_tensors_text("bm90IHRlbnNvcnM=", "here")


# -- through the Harmonizer ------------------------------------------------------------------


def test_learned_strength_through_the_harmonizer(files):
    comp, mask = composite()
    h = Harmonizer.from_pretrained(files["full"], strength="learned")
    assert "strength learned (per image, from colour statistics of the composite and the model's change, " \
           "the extractor's codes, the measured strength)" in h.describe()
    result = h.harmonize(comp, mask)
    # the strength is the head on the features of the working-size composite and output
    item = h.prepare(comp, mask)
    out = h.run_network([item])[0][0]
    t, m = h._tensors([item.composite_low], [item.mask_low])
    z_b, z_f = h.runner.codes(t, m)
    z_o = h.runner.codes(h._tensors([out], [item.mask_low])[0], m)[1]
    row = features(item.composite_low, item.mask_low, out, CODE, codes=torch.cat([z_b, z_f, z_o], 1).numpy(),
                   measured=h.measure_strength(item, out))
    expected = float(h.runner.strength_head(torch.from_numpy(row[None]))[0])
    assert result.strength == pytest.approx(expected, abs=1e-5)
    # ... applied like a fixed one
    fixed = Harmonizer.from_pretrained(files["full"], strength=result.strength)
    np.testing.assert_array_equal(np.asarray(result.image), np.asarray(fixed(comp, mask)))
    # a batch decides all its strengths at once, as one by one
    pairs = [(comp, mask), composite(gains=(0.7, 0.9, 1.3), box=(40, 80, 60, 110)), (comp, mask)]
    batched = [b.result.strength for b in Harmonizer.from_pretrained(files["full"], strength="learned", batch_size=3).iter_batch(pairs)]
    single = [b.result.strength for b in Harmonizer.from_pretrained(files["full"], strength="learned", batch_size=1).iter_batch(pairs)]
    assert batched == pytest.approx(single, abs=1e-4) and batched[0] == pytest.approx(result.strength, abs=1e-4)
    assert batched[0] != pytest.approx(batched[1], abs=1e-3)  # it does depend on the image
    # per call, background, and the recommendation of a weights file
    assert Harmonizer.from_pretrained(files["full"]).harmonize(comp, mask, strength="learned").strength == result.strength
    assert h.process([h.prepare(comp, mask)], target="background")[0].strength == 0.7
    stats = Harmonizer.from_pretrained(files["stats"])
    assert stats.strength == "learned" and "codes" not in stats.describe()
    # a statistics-only head runs beside the ONNX graph as well; one reading codes cannot
    onnx = Harmonizer.from_pretrained(files["stats"], backend="onnxruntime")
    assert onnx.harmonize(comp, mask).strength == pytest.approx(stats.harmonize(comp, mask).strength, abs=1e-4)
    with pytest.raises(InputError, match="reads the extractor's codes, which the onnxruntime backend does not give"):
        Harmonizer.from_pretrained(files["full"], backend="onnxruntime", strength="learned")
    # no head, no learned strength: said at construction or at the call
    with pytest.raises(InputError, match="needs a weights file with a strength head"):
        Harmonizer.from_pretrained(files["plain"], strength="learned")
    with pytest.raises(InputError, match="needs a weights file with a strength head"):
        Harmonizer.from_pretrained(files["plain"]).harmonize(comp, mask, strength="learned")


def test_learned_strength_on_the_command_line(files, tmp_path, capsys):
    comp, mask = composite()
    Image.fromarray(comp).save(tmp_path / "c.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    base = ["harmonize", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]
    assert main([*base, "--weights", str(files["full"]), "--strength", "learned"]) == 0
    out, err = capsys.readouterr()
    assert "strength learned (per image" in err and "(learned); wrote" in out
    assert main([*base, "--weights", str(files["plain"]), "--strength", "learned"]) != 0
    assert "needs a weights file with a strength head" in capsys.readouterr().err

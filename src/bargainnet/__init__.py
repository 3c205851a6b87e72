"""BargainNet: background-guided domain translation for image harmonization (ICME 2021).

Quick start::

    from bargainnet import BargainNet
    model = BargainNet().eval()
    harmonized = model.harmonize(composite, mask)  # (B,3,H,W) in [-1,1], mask (B,1,H,W) 1 = foreground
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "BargainNet", "BargainNetConfig", "load_published", "load_weights", "save_weights"]


def __getattr__(name: str):
    # Lazy: `import bargainnet` (and the CLI's --help) must not pay for importing torch.
    if name in ("BargainNet", "BargainNetConfig"):
        from .models import bargainnet as module
    elif name in ("load_published", "load_weights", "save_weights"):
        from .models import convert as module
    else:
        raise AttributeError(f"module 'bargainnet' has no attribute {name!r}")
    return getattr(module, name)

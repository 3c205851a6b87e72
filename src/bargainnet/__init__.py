"""BargainNet: background-guided domain translation for image harmonization (ICME 2021).

Quick start::

    from bargainnet import BargainNet
    model = BargainNet().eval()
    harmonized = model.harmonize(composite, mask)  # (B,3,H,W) in [-1,1], mask (B,1,H,W) 1 = foreground

    from bargainnet import Harmonizer
    out = Harmonizer.from_pretrained()("composite.jpg", "mask.png")  # full resolution

Layers (see the README's Layout): :mod:`bargainnet.models`, :mod:`bargainnet.data`,
:mod:`bargainnet.training`, :mod:`bargainnet.evaluation`, :mod:`bargainnet.inference`,
:mod:`bargainnet.commands`.
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

# Lazy: `import bargainnet` (and the CLI's --help) must not pay for importing torch.
_EXPORTS = {
    **dict.fromkeys(("BargainNet", "BargainNetConfig"), ".models.bargainnet"),
    **dict.fromkeys(("load_published", "load_weights", "save_weights"), ".models.convert"),
    **dict.fromkeys(("create_model", "register_family"), ".models.registry"),
    **dict.fromkeys(("Harmonizer", "HarmonizeResult", "Inharmony"), ".inference.harmonizer"),
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

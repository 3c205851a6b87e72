"""Harmonize your own images at their own size, one job per module:

- :mod:`.harmonizer` — :class:`Harmonizer` (single images, pasted cut-outs, batches) and the runners
- :mod:`.resolution` — to the model's working size and back to full resolution
- :mod:`.lifting` — the local affine colour transform that carries a colour change to full resolution
- :mod:`.onnx` — ONNX export and the onnxruntime runner
- :mod:`.figures` — the composite | harmonized | mask figure

::

    from bargainnet.inference import Harmonizer
    harmonizer = Harmonizer.from_pretrained()          # the installed default model
    out = harmonizer("composite.jpg", "mask.png")     # PIL image, input's size

Names are re-exported lazily.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Harmonizer", "HarmonizeResult", "Inharmony", "Prepared", "TorchRunner", "resolve_device",
                     "default_weights_path", "METHODS"), ".harmonizer"),
    **dict.fromkeys(("export_onnx", "OnnxRunner", "OnnxConfig", "compare_with_torch"), ".onnx"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Harmonize your own images, at their own size: the Python API behind ``bargainnet harmonize``.

::

    from bargainnet.inference import Harmonizer
    harmonizer = Harmonizer.from_pretrained("model.safetensors")   # or () for the default model
    out = harmonizer("composite.jpg", "mask.png")                   # PIL image, input's size
    harmonizer.score("composite.jpg", "mask.png")                   # Inharmony(distance, score)
    harmonizer.harmonize_background("composite.jpg", "mask.png")
    result = harmonizer.paste("cutout.png", "background.jpg", position=(120, 80), scale=0.5)

How an image goes through (see :mod:`bargainnet.io` for the input rules):

1. the composite is resized to the working size S×S (S = 256 for the paper's model; the
   model's config says which sizes it accepts) and the mask binarised there, as
   :mod:`bargainnet.inference.resolution` does for every caller;
2. the network harmonizes at S×S (eval mode);
3. the inharmony level d(z_b, z̃_f) (paper §4.6; the bounded score is exp(−0.04212·d)) is
   measured on one scale whatever S: the domain code extractor alone, on the composite resized to
   256×256 (:data:`bargainnet.models.base.INHARMONY_SIZE`), before, and on the full-resolution
   result resized the same way, after (against the composite's background code z_b, since a
   foreground harmonization leaves the background as it was; the ONNX runner, which has no
   separate extractor, reports the graph's own numbers at S×S); with ``min_inharmony=T`` an
   image whose inharmony level is below T is returned unchanged (paper supplement §7: leave
   harmonious images alone), and with ``keep_if_worse=True`` one whose inharmony rose is returned
   unchanged too;
4. the colour change is lifted to full resolution (:mod:`bargainnet.inference.resolution`: a
   smooth local affine colour transform fitted inside the foreground; ``method="upsample"``
   upsamples the network output instead), and composited with the full-resolution mask, so
   every background pixel is bit-identical to the input.

Many images: :meth:`Harmonizer.iter_batch` yields one :class:`BatchOutcome` (a result or the
error) per (composite, mask) pair, so one bad item never stops the rest.

Returned images have the input's size and kind: a PIL image for a path or PIL input, a numpy
array (uint8 for uint8 input, float32 in [0, 1] otherwise) for an array. Colour is always RGB;
an input alpha channel is kept unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from .. import io as bio
from ..errors import InputError
from ..models.base import (AUTO_STRENGTH, INHARMONY_SIZE, LEARNED_STRENGTH, PER_IMAGE_STRENGTHS, Calibration, check_size,
                           check_strength_setting)
from . import lifting
from .resolution import (
    METHODS, Working, back_to_full_resolution, resize_changed, resize_image, to_working_size,
    transform_applier,
)

DEFAULT_WEIGHTS = "weights/default.safetensors"  # package data of `bargainnet`


@dataclass
class Inharmony:
    """Inharmony level ``distance`` = d(z_b, z̃_f) >= 0 and ``score`` = exp(−0.04212·d) in (0, 1]."""

    distance: float
    score: float


def _float_unless_8bit(image: bio.ImageData) -> np.ndarray | None:
    """The float pixels where they are the source's own (no 8-bit copy); None for 8-bit images,
    whose float copy every path here can do without."""
    return None if image.eight_bit else image.rgb


@dataclass
class Prepared:
    """One item ready for the network (internal; exposed for batch drivers such as the CLI)."""

    name: str
    image: bio.ImageData  # the composite
    mask: np.ndarray  # bool (H, W), full resolution
    guide: np.ndarray | bio.ImageData  # uint8 or float (H, W, 3): what the colour transform is applied to
    blend: np.ndarray | None  # float alpha (H, W) for paste mode, else None (binary mask)
    working: Working  # the composite and mask at the working size S×S
    kind: str  # "pil" or "array": what to return
    array_dtype: Any = None
    inputs: tuple = ()  # paths of the inputs (an output must never be one of them)
    background: np.ndarray | None = None  # paste mode: the background's float RGB (H, W, 3)
    canonical: Working | None = None  # the composite and mask at INHARMONY_SIZE (Harmonizer._canonical)
    background_code: Any = None  # z_b (1, L) at INHARMONY_SIZE, once the score before is measured

    @property
    def composite_low(self) -> np.ndarray:
        return self.working.composite

    @property
    def mask_low(self) -> np.ndarray:
        return self.working.mask


@dataclass
class HarmonizeResult:
    """The outcome for one image.

    Attributes:
        image: the harmonized image, same size and kind as the input (PIL image or array).
        composite: the composite that was harmonized, same kind (in paste mode: the pasted image).
        mask: bool (H, W), the binarised full-resolution mask (1 = the part that was harmonized).
        before, after: inharmony of the composite and of the result, both at 256×256 (see the
            module docstring); ``after`` is None when only the composite was scored.
        skipped: True when ``min_inharmony`` left the image untouched.
        got_worse: True when the harmonization raised the inharmony (``after > before``); with
            ``keep_if_worse`` the image is then the composite, and ``kept`` is True.
        target: "foreground" or "background".
        strength: the strength applied (decided for this image with ``strength="auto"`` or
            ``"learned"``; 0 when the composite was returned).
    """

    image: Any
    composite: Any
    mask: np.ndarray
    before: Inharmony
    after: Inharmony | None
    skipped: bool = False
    target: str = "foreground"
    name: str = ""
    rgb8: np.ndarray | None = field(default=None, repr=False)
    alpha: np.ndarray | None = field(default=None, repr=False)
    got_worse: bool = False
    kept: bool = False
    strength: float = 1.0


@dataclass
class BatchOutcome:
    """One item of :meth:`Harmonizer.iter_batch`: its ``result`` or the ``error`` that stopped it."""

    index: int  # position in the input
    composite: Any  # what was given as the composite (and its mask)
    mask: Any
    result: HarmonizeResult | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def message(self) -> str:
        """The error as one line for a failure list (user errors as they are, others with their type)."""
        from ..errors import UserError

        if self.error is None:
            return ""
        return str(self.error) if isinstance(self.error, UserError) else f"{type(self.error).__name__}: {self.error}"


def _score(distance: float) -> float:
    from ..models.bargainnet import harmony_score

    return float(harmony_score(float(distance)))


def resolve_device(device: str | None) -> str:
    """"auto" -> "cuda" when available else "cpu"; an unavailable device is an :class:`InputError`."""
    import torch

    device = (device or "cpu").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} requested but MPS is not available here; use --device cpu")
    return device


def default_weights_path() -> Path:
    """Where the default model lives inside the installed package (it may be absent)."""
    from importlib.resources import files

    return Path(str(files("bargainnet").joinpath(DEFAULT_WEIGHTS)))


class TorchRunner:
    """Runs a model (any registered family) in eval mode; the same API as :class:`bargainnet.inference.onnx.OnnxRunner`."""

    backend = "pytorch"

    def __init__(self, model, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.device = device
        self.config = model.config
        self.inference_settings = dict(getattr(model, "inference_settings", None) or {})
        self.strength_head = getattr(model, "strength_head", None)

    @property
    def predicts_transform(self) -> bool:
        """Whether the model predicts a colour transform that can be applied at full resolution."""
        return bool(getattr(self.model, "predicts_transform", False))

    def run(self, composite, mask, *, scores: bool = True):
        """(B,3,S,S) in [-1,1], (B,1,S,S) -> harmonized, inharmony before, after (torch, CPU), and
        the per-image transform parameters (a list of dicts, or None for a pixel generator).
        ``scores=False``: skip the extractor calls behind before/after (NaN), for a caller that
        measures them on the canonical scale anyway."""
        import torch

        c, m = composite.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            if not scores:
                if self.predicts_transform:
                    out, params = self.model.harmonize(c, m, return_params=True)
                else:
                    out, params = self.model.harmonize(c, m), None
                nan = torch.full((c.shape[0],), float("nan"))
                outs = (out, nan, nan)
            elif self.predicts_transform:
                *outs, params = self.model.harmonize_with_inharmony(c, m, return_params=True)
            else:
                outs, params = self.model.harmonize_with_inharmony(c, m), None
        return (*(o.float().cpu() for o in outs), _split_params(params, composite.shape[0]))

    def codes(self, composite, mask, z_b=None):
        """The background and foreground codes (z_b, z_f), each (B, L) on the CPU, of composites
        (B,3,s,s) in [-1, 1] with masks (B,1,s,s): the domain code extractor only, so any s >= 64
        works whatever the generator's size rule (the Harmonizer passes s = INHARMONY_SIZE).
        ``z_b``: the background's code when it is known already (a foreground harmonization keeps
        the background)."""
        import torch

        with torch.inference_mode():
            c, m = composite.to(self.device), mask.to(self.device)
            if z_b is None:
                z_b = self.model.domain_code(c, 1 - m).float().cpu()
            z_f = self.model.domain_code(c, m).float().cpu()
        return z_b, z_f

    def background(self, composite, mask):
        """Background harmonization (B,3,S,S) and its before/after inharmony."""
        import torch

        with torch.inference_mode():
            c, m = composite.to(self.device), mask.to(self.device)
            out = self.model.harmonize_background(c, m)
            before, _ = self.model.inharmony(c, m)
            after, _ = self.model.inharmony(out, m)
            params = self.model.background_params(c, m) if self.predicts_transform else None
        return out.float().cpu(), before.float().cpu(), after.float().cpu(), _split_params(params, c.shape[0])


def _split_params(params: dict | None, batch: int) -> list[dict | None]:
    """Batched transform parameters -> one dict per image (float32, CPU); None -> [None] * batch."""
    if params is None:
        return [None] * batch
    return [{k: v[i : i + 1].float().cpu() for k, v in params.items()} for i in range(batch)]


class Harmonizer:
    """Full-resolution harmonization with a BargainNet (see the module docstring).

    Args:
        model: a :class:`BargainNet` (or None when ``runner`` is given).
        size: working size S (default: the model config's ``default_size``, 256 for the paper's
            model); one the model accepts (:func:`bargainnet.models.base.check_size`).
        device: "cpu", "cuda", "cuda:N", "mps" or "auto".
        batch_size: images per network call in :meth:`harmonize_many`.
        method: "auto" (default: "transform" for a model that predicts a colour transform — applied
            to the full-resolution pixels — else "lift"), "lift" (a local affine colour transform
            fitted to the network's change) or "upsample" (the network output upsampled).
        min_inharmony: default threshold T on the inharmony distance; below it, images are left
            untouched. None = always harmonize.
        keep_if_worse: return the composite unchanged when harmonizing raised its inharmony
            (the result says ``got_worse`` and ``kept``).
        threshold: mask binarisation threshold (see :mod:`bargainnet.io`).
        max_pixels: pixel limit per input image (decompression-bomb guard).
        radius, eps: lifting parameters (:func:`bargainnet.inference.lifting.fit_local_affine`);
            radius None = the model's recommendation (its weights file's ``lift_radius``), else
            ``lifting.DEFAULT_RADIUS``.
        strength: how much of the model's colour change to apply, from 0 (the input unchanged) to
            2; 1 = the model's result, between = a blend, above 1 = amplified; or "auto": measured
            for each image on its own background (:mod:`bargainnet.inference.calibration`; one more
            network call per image); or "learned": predicted for each image by the weights file's
            strength head (:mod:`bargainnet.inference.learned_strength`). None = the model's
            recommendation (its weights file's ``strength``), else 1.
        calibration: how "auto" turns its measurement into a strength
            (:class:`~bargainnet.models.base.Calibration` or a dict of its fields); None = the
            model's recommendation (its weights file's ``calibration``), else the defaults.
        runner: a ready runner (e.g. :class:`bargainnet.inference.onnx.OnnxRunner`) instead of ``model``.
    """

    def __init__(
        self,
        model=None,
        *,
        size: int | None = None,
        device: str = "cpu",
        batch_size: int = 4,
        method: str = "auto",
        min_inharmony: float | None = None,
        keep_if_worse: bool = False,
        threshold: float = bio.MASK_THRESHOLD,
        max_pixels: int | None = None,
        radius: int | None = None,
        eps: float = lifting.DEFAULT_EPS,
        strength: float | str | None = None,
        calibration: Calibration | dict | None = None,
        runner=None,
    ):
        if runner is None:
            if model is None:
                raise InputError("Harmonizer needs a model or a runner; use Harmonizer.from_pretrained(path)")
            runner = TorchRunner(model, resolve_device(device))
        elif size is not None and int(size) != runner.size:
            raise InputError(f"the ONNX model was exported at size {runner.size}; it cannot run at {size}")
        else:
            size = runner.size
        size = check_size(runner.config, size)
        if method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {method!r}")
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        if min_inharmony is not None and min_inharmony < 0:
            raise InputError(f"min_inharmony must be >= 0, got {min_inharmony}")
        self.runner = runner
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.method = method
        self.min_inharmony = min_inharmony
        self.keep_if_worse = bool(keep_if_worse)
        self.threshold = threshold
        self.max_pixels = max_pixels
        recommended = getattr(runner, "inference_settings", {})
        if radius is None:
            radius = recommended.get("lift_radius", lifting.DEFAULT_RADIUS)
        if int(radius) != radius or radius < 1:
            raise InputError(f"the lifting radius must be a whole number >= 1, got {radius}")
        self.radius = int(radius)
        self.eps = eps
        self.strength = check_strength_setting(recommended.get("strength", 1.0) if strength is None else strength)
        if self.strength == LEARNED_STRENGTH:
            self._check_strength_head()
        if calibration is None:
            calibration = recommended.get("calibration", {})
        self.calibration = calibration if isinstance(calibration, Calibration) else Calibration.from_dict(calibration)
        size = self.calibration.size
        if size and size != self.size:
            if self.size % size:
                raise InputError(f"the calibration size {size} must divide the working size {self.size}")
            check_size(runner.config, size, what="calibration size")

    def _check_strength_head(self) -> None:
        """InputError unless the runner has a strength head it can feed ("learned")."""
        from .learned_strength import needs

        head = getattr(self.runner, "strength_head", None)
        if head is None:
            raise InputError("strength 'learned' needs a weights file with a strength head, and this model has none; "
                             "use a number or 'auto'")
        if needs(head.config.columns, self.runner.config.code_dim)[0] and not hasattr(self.runner, "codes"):
            raise InputError(f"this model's strength head reads the extractor's codes, which the {self.backend} "
                             "backend does not give; use the PyTorch backend or another strength")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        *,
        backend: str = "pytorch",
        device: str = "cpu",
        **kwargs,
    ) -> "Harmonizer":
        """Load weights and build a Harmonizer.

        Args:
            path: a bargainnet ``.safetensors`` file (``save_weights`` / ``bargainnet convert``)
                or an ``.onnx`` file from ``bargainnet export-onnx``; None = the default model
                installed with the package (``bargainnet/weights/default.safetensors``).
            backend: "pytorch" or "onnxruntime" (a ``.safetensors`` file is exported to ONNX on
                the fly, into a temporary folder).
            device: for the PyTorch backend.
            **kwargs: passed to :class:`Harmonizer` (size, batch_size, method, min_inharmony, ...).
        """
        if backend not in ("pytorch", "onnxruntime"):
            raise InputError(f"backend must be 'pytorch' or 'onnxruntime', got {backend!r}")
        if path is None:
            path = default_weights_path()
            if not path.is_file():
                raise InputError(
                    f"no default weights are installed (expected {path}); pass a weights file: "
                    "Harmonizer.from_pretrained('model.safetensors') or --weights model.safetensors"
                )
        path = Path(path)
        if not path.exists():
            raise InputError(f"weights file not found: {path}")
        if path.suffix.lower() == ".onnx":
            from .onnx import OnnxRunner

            if device not in ("cpu", None, "auto"):
                raise InputError("an .onnx model runs with onnxruntime on the CPU; use --device cpu")
            return cls(runner=OnnxRunner(path), **kwargs)
        from ..models.convert import load_weights

        model = load_weights(path)
        if backend == "pytorch":
            return cls(model, device=device, **kwargs)
        import tempfile

        from .onnx import OnnxRunner, export_onnx

        size = kwargs.get("size") or model.config.default_size
        with tempfile.TemporaryDirectory(prefix="bargainnet-onnx-") as tmp:
            onnx_path = export_onnx(model, Path(tmp) / "model.onnx", size=size)
            runner = OnnxRunner(onnx_path)  # the session holds the graph; the file may go
        return cls(runner=runner, **kwargs)

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def full_resolution(self) -> str:
        """How results reach full resolution, in words."""
        if self.method in ("auto", "transform") and getattr(self.runner, "predicts_transform", False):
            return "the predicted colour transform applied at full resolution"
        if self.method == "upsample":
            return "the output upsampled"
        return f"lifted to full resolution with radius {self.radius}"

    def describe(self) -> str:
        """The settings in one line (``bargainnet harmonize`` prints it): backend, working size, how
        results reach full resolution and how much of the model's change is applied."""
        return f"{self.backend}, working size {self.size}, {self.full_resolution}, strength {self.strength_text}"

    @property
    def strength_text(self) -> str:
        """The strength setting in words: the number, or how "auto" measures it, or what "learned" reads."""
        if self.strength == LEARNED_STRENGTH:
            from .learned_strength import needs

            codes, measured = needs(self.runner.strength_head.config.columns, self.runner.config.code_dim)
            extra = "".join([", the extractor's codes" if codes else "", ", the measured strength" if measured else ""])
            return f"learned (per image, from colour statistics of the composite and the model's change{extra})"
        if self.strength != AUTO_STRENGTH:
            return f"{self.strength:g}"
        c = self.calibration
        null = f", scaled down below {c.null_ratio:g} x the change on an unperturbed patch" if c.null_ratio else ""
        return (f"auto (measured per image on {c.placements} background patch{'es' if c.placements > 1 else ''}: "
                f"{c.scale:g} x the factor, from {c.min_strength:g} to {c.max_strength:g}{null}; {c.fallback:g} when none fits)")

    # -- preparing inputs ------------------------------------------------------------------------
    def _working(self, image: bio.ImageData, mask: np.ndarray, size: int, **kwargs) -> Working:
        """The composite and mask at size×size (:func:`to_working_size`)."""
        pil8 = image.pil if image.pil is not None else Image.fromarray(image.rgb8) if image.eight_bit else None
        return to_working_size(_float_unless_8bit(image), mask, size, rgb8=pil8, name=image.name, **kwargs)

    def _canonical(self, item: Prepared) -> Working:
        """The composite and mask at INHARMONY_SIZE, where every score is measured (made on first
        use: a call that measures no inharmony never needs them)."""
        if item.canonical is None:
            item.canonical = self._working(item.image, item.mask, INHARMONY_SIZE, require_both=False)
        return item.canonical

    @property
    def scores_canonically(self) -> bool:
        """Whether inharmony is measured at INHARMONY_SIZE (the runner has a separate extractor);
        False for the ONNX runner, whose numbers come from the graph at the working size."""
        return hasattr(self.runner, "codes")

    def _canonical_codes(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], z_b=None):
        """Inharmony distances (B,) of images (INHARMONY_SIZE², 3) in [0, 1] with bool masks, on the
        one scale every score uses, and the background codes z_b (B, L) (given: only z_f is computed)."""
        z_b, z_f = self.runner.codes(*self._tensors(images, masks), z_b)
        return (z_b - z_f).norm(dim=1).numpy().astype(float), z_b

    def _canonical_before(self, items: Sequence[Prepared], fallback) -> np.ndarray:
        if not self.scores_canonically:
            return np.asarray(fallback, float)
        views = [self._canonical(p) for p in items]
        distances, z_b = self._canonical_codes([v.composite for v in views], [v.mask for v in views])
        for i, item in enumerate(items):
            item.background_code = z_b[i : i + 1]
        return distances

    def _canonical_after(self, item: Prepared, result: bio.ImageData, box, target: str) -> float:
        """The result's inharmony: the full-resolution output resized like the composite was
        (8-bit: only the cells its changed box reaches are resized again), with the composite's
        mask; after a foreground harmonization, against the composite's background code."""
        if result.eight_bit:
            pil = result.pil if result.pil is not None else Image.fromarray(result.rgb8)
            out = resize_changed(self._canonical(item).composite, pil, box)
        else:
            out = resize_image(result.rgb, INHARMONY_SIZE)
        z_b = item.background_code if target == "foreground" else None
        return float(self._canonical_codes([out], [self._canonical(item).mask], z_b)[0][0])

    def prepare(self, composite, mask, *, resize_mask: bool = False) -> Prepared:
        """Load and check one (composite, mask) pair; raises :class:`InputError` on bad input."""
        image = bio.load_image(composite, max_pixels=self.max_pixels)
        size = image.size
        binary = bio.load_mask(
            mask, size=size, resize=resize_mask, threshold=self.threshold, max_pixels=self.max_pixels, check_coverage=False
        )
        bio.check_mask_coverage(binary, bio._describe(mask))
        working = self._working(image, binary, self.size)
        kind = "array" if isinstance(composite, np.ndarray) else "pil"
        inputs = tuple(p for p in (composite, mask) if isinstance(p, (str, os.PathLike)))
        return Prepared(
            name=image.name, image=image, mask=binary, guide=image, blend=None,
            working=working, kind=kind, array_dtype=getattr(composite, "dtype", None), inputs=inputs,
        )

    def prepare_paste(
        self,
        foreground,
        background,
        position: tuple[int, int] | None = None,
        scale: float = 1.0,
    ) -> Prepared:
        """Paste a cut-out (its alpha is the mask) onto a background at ``position`` = (x, y) of
        its top-left corner (None: centred), after scaling it by ``scale``; parts outside the
        background are cut off.
        """
        fg = bio.load_image(foreground, max_pixels=self.max_pixels)
        bg = bio.load_image(background, max_pixels=self.max_pixels)
        if fg.alpha is None:
            raise InputError(f"{fg.name}: the cut-out has no alpha channel; its alpha is the mask (use an RGBA PNG)")
        if not scale > 0:
            raise InputError(f"scale must be > 0, got {scale}")
        rgb, alpha = fg.rgb, fg.alpha
        if scale != 1.0:
            w = max(1, round(fg.size[0] * scale))
            h = max(1, round(fg.size[1] * scale))
            limit = bio.max_pixels_default() if self.max_pixels is None else self.max_pixels
            if w * h > limit:
                raise InputError(f"{fg.name}: the cut-out scaled by {scale} is {w}x{h}, over the pixel limit of {limit:,}")
            premult = lifting.resize_float(rgb * alpha[..., None], (w, h), Image.LANCZOS)
            alpha = np.clip(lifting.resize_float(alpha, (w, h), Image.LANCZOS), 0.0, 1.0)
            rgb = np.clip(premult / np.maximum(alpha, 1e-6)[..., None], 0.0, 1.0)
            rgb[alpha <= 1e-6] = 0.0
        bw, bh = bg.size
        fh, fw = alpha.shape
        if position is None:
            position = ((bw - fw) // 2, (bh - fh) // 2)
        x, y = int(position[0]), int(position[1])
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + fw, bw), min(y + fh, bh)
        if x0 >= x1 or y0 >= y1:
            raise InputError(
                f"{fg.name}: the cut-out ({fw}x{fh} at {x},{y}) falls outside the background {bg.name} ({bw}x{bh})"
            )
        layer = bg.rgb.copy()
        canvas_alpha = np.zeros((bh, bw), np.float32)
        layer[y0:y1, x0:x1] = rgb[y0 - y : y1 - y, x0 - x : x1 - x]
        canvas_alpha[y0:y1, x0:x1] = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
        blend = canvas_alpha[..., None]
        composite_rgb = layer * blend + bg.rgb * (1 - blend)
        binary = canvas_alpha >= self.threshold
        bio.check_mask_coverage(binary, f"{fg.name} pasted at {x},{y}")
        # The composite as an image: background pixels (alpha 0) bit-identical.
        rgb8 = None
        if bg.rgb8 is not None:
            rgb8 = np.where((canvas_alpha > 0)[..., None], bio.to_uint8(composite_rgb), bg.rgb8)
            composite_rgb = rgb8.astype(np.float32) / 255.0
        image = bio.ImageData(rgb=composite_rgb.astype(np.float32), alpha=bg.alpha, rgb8=rgb8,
                              name=f"{fg.name} on {bg.name}")
        working = self._working(image, binary, self.size)
        kind = "array" if isinstance(background, np.ndarray) else "pil"
        inputs = tuple(p for p in (foreground, background) if isinstance(p, (str, os.PathLike)))
        return Prepared(
            name=image.name, image=image, mask=binary, guide=layer, blend=canvas_alpha,
            working=working, kind=kind, array_dtype=getattr(background, "dtype", None), inputs=inputs,
            background=bg.rgb,
        )

    # -- running ---------------------------------------------------------------------------
    @staticmethod
    def _tensors(composites: Sequence[np.ndarray], masks: Sequence[np.ndarray]):
        """Images (H, W, 3) in [0, 1] and bool masks as the network's (B, 3, H, W) in [-1, 1] and (B, 1, H, W)."""
        import torch

        comp = torch.from_numpy(np.stack(composites)).permute(0, 3, 1, 2).float() * 2 - 1
        mask = torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]
        return comp.contiguous(), mask

    def run_network(self, items: Sequence[Prepared], *, target: str = "foreground"):
        """One network call for ``items``: low-res outputs in [0, 1] (B, S, S, 3), before, after,
        and each image's transform parameters (None unless the model predicts a transform)."""
        return self._run_arrays([p.composite_low for p in items], [p.mask_low for p in items], target)

    def _run_arrays(self, composites: Sequence[np.ndarray], masks: Sequence[np.ndarray], target: str = "foreground"):
        comp, mask = self._tensors(composites, masks)
        if target == "background":
            if not hasattr(self.runner, "background"):
                raise InputError("background harmonization is only available with the PyTorch backend")
            out, before, after, *params = self.runner.background(comp, mask)
        elif self.scores_canonically:  # before/after are measured at INHARMONY_SIZE instead
            out, before, after, *params = self.runner.run(comp, mask, scores=False)
        else:
            out, before, after, *params = self.runner.run(comp, mask)
        params = params[0] if params else [None] * len(composites)  # the ONNX runner has none
        out01 = ((out.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        return out01, before.numpy().astype(float), after.numpy().astype(float), params

    def finish(
        self,
        item: Prepared,
        output_low: np.ndarray,
        before: float,
        after: float,
        *,
        target: str = "foreground",
        min_inharmony: float | None = None,
        params: dict | None = None,
        keep_if_worse: bool | None = None,
        scores: bool = True,
        strength: float | None = None,
    ) -> HarmonizeResult:
        """Bring one network output (or its predicted transform ``params``) to full resolution and
        build the result. ``before``/``after``: the item's inharmony (``before`` on the canonical
        scale when the runner has one; ``after`` is then re-measured on the result, unless
        ``scores`` is False: then the result's inharmony is whatever ``after`` says, NaN from
        :meth:`process`). ``strength``: this call's (None = the Harmonizer's)."""
        threshold = self.min_inharmony if min_inharmony is None else min_inharmony
        keep = self.keep_if_worse if keep_if_worse is None else keep_if_worse
        strength = check_strength_setting(self.strength if strength is None else strength)
        if not scores and (threshold is not None or keep):
            raise ValueError("min_inharmony and keep_if_worse need the scores")
        image = item.image
        region = item.mask if target == "foreground" else ~item.mask
        skipped = self._skips(before, threshold)
        got_worse = kept = False
        out = None  # the result's pixels (an ImageData); None: the composite's
        if skipped:
            after = before  # the returned image is the composite
            strength = 0.0
        else:
            if strength in PER_IMAGE_STRENGTHS:
                strength = self._per_image([item], [output_low], target, strength)[0]
            out, box = self._full_resolution(item, output_low, target, region, params, strength)
            if self.scores_canonically and scores:
                after = self._canonical_after(item, out, box, target)
            got_worse = after > before
            if got_worse and keep:
                out, kept = None, True
        composite_image = self._as_output(item, image)
        if out is None:  # the composite, as its own object
            result_image = composite_image.copy()
            out = image
        else:
            result_image = self._as_output(item, out)
        return HarmonizeResult(
            image=result_image, composite=composite_image, mask=item.mask,
            before=Inharmony(before, _score(before)), after=Inharmony(after, _score(after)),
            skipped=skipped, target=target, name=item.name,
            rgb8=out.rgb8 if out.pil is None else None, alpha=image.alpha, got_worse=got_worse, kept=kept,
            strength=0.0 if kept else strength,
        )

    @staticmethod
    def _skips(before: float, threshold: float | None) -> bool:
        """Whether an item whose inharmony is ``before`` is left untouched under ``min_inharmony`` ``threshold``."""
        return threshold is not None and before < threshold

    def measure_strength(self, item: Prepared, output_low: np.ndarray, target: str = "foreground") -> float:
        """The strength "auto" gives ``item``, whose network output at the working size is
        ``output_low``: measured on its own background (one more network call); for a background
        harmonization, the calibration's fallback."""
        return self.measure_strengths([item], [output_low], target)[0]

    def measure_strengths(self, items: Sequence[Prepared], outputs_low: Sequence[np.ndarray],
                          target: str = "foreground") -> list[float]:
        """:meth:`measure_strength` of several items, their calibration patches in one network call."""
        if target != "foreground":
            return [float(self.calibration.fallback)] * len(items)
        from .calibration import measured_strengths

        return measured_strengths([(item.composite_low, item.mask_low, out) for item, out in zip(items, outputs_low)],
                                  lambda comps, masks: self._run_arrays(list(comps), list(masks))[0], self.calibration)

    def learned_strengths(self, items: Sequence[Prepared], outputs_low: Sequence[np.ndarray],
                          target: str = "foreground") -> list[float]:
        """The strengths "learned" gives ``items``, whose network outputs at the working size are
        ``outputs_low``: the weights file's strength head on features of each composite and output
        (:mod:`bargainnet.inference.learned_strength`; the codes and the measured strength only when
        the head reads them, for all items in one call each); for a background harmonization, the
        calibration's fallback."""
        if target != "foreground":
            return [float(self.calibration.fallback)] * len(items)
        self._check_strength_head()
        import torch

        from .learned_strength import needs

        head = self.runner.strength_head
        codes, measured = needs(head.config.columns, self.runner.config.code_dim)
        rows = self.strength_features(items, outputs_low, codes=codes, measured=measured)
        with torch.inference_mode():
            strengths = head(torch.from_numpy(rows).to(head.mean.device)).float().cpu()
        return [float(x) for x in strengths]

    def strength_features(self, items: Sequence[Prepared], outputs_low: Sequence[np.ndarray], *,
                          codes: bool = True, measured: bool = True) -> np.ndarray:
        """The feature rows (B, F) a strength head reads (:mod:`bargainnet.inference.learned_strength`)
        of ``items`` and their network outputs at the working size; the extractor's codes and the
        measured strength (one call each for all items) only when asked for, else 0."""
        import torch

        from .learned_strength import features

        length = self.runner.config.code_dim
        composites, masks = [p.composite_low for p in items], [p.mask_low for p in items]
        strengths = self.measure_strengths(items, outputs_low) if measured else [None] * len(items)
        z = [None] * len(items)
        if codes:
            comp, mask = self._tensors(composites, masks)
            z_b, z_f = self.runner.codes(comp, mask)
            z_o = self.runner.codes(self._tensors(list(outputs_low), masks)[0], mask, z_b)[1]
            z = torch.cat([z_b, z_f, z_o], dim=1).numpy()
        return np.stack([features(c, m, o, length, codes=zk, measured=k)
                         for c, m, o, zk, k in zip(composites, masks, outputs_low, z, strengths)])

    def _per_image(self, items: Sequence[Prepared], outputs_low, target: str, setting: str) -> list[float]:
        """The strengths a per-image ``setting`` ("auto" or "learned") gives ``items``."""
        if setting == LEARNED_STRENGTH:
            return self.learned_strengths(items, outputs_low, target)
        return self.measure_strengths(items, outputs_low, target)

    def _strengths(self, items: Sequence[Prepared], outputs_low, befores, target: str, min_inharmony, strength) -> list:
        """The ``strength`` to give :meth:`finish` for each item of one network call: for a per-image
        setting ("auto", "learned"), decided for all the items that will not be skipped at once; else as given."""
        setting = check_strength_setting(self.strength if strength is None else strength)
        if setting not in PER_IMAGE_STRENGTHS or target != "foreground":
            return [strength] * len(items)
        threshold = self.min_inharmony if min_inharmony is None else min_inharmony
        todo = [k for k, before in enumerate(befores) if not self._skips(before, threshold)]
        strengths: list = [strength] * len(items)  # a skipped item's strength is never used
        measured = self._per_image([items[k] for k in todo], [outputs_low[k] for k in todo], target, setting) if todo else []
        for k, value in zip(todo, measured):
            strengths[k] = value
        return strengths

    def _full_resolution(self, item: Prepared, output_low: np.ndarray, target: str, region: np.ndarray, params,
                         strength: float):
        """The full-resolution result (an ImageData) and the box of the pixels that may change; only
        pixels of ``region`` (paste mode: where the cut-out's alpha > 0) are written, all others are
        the composite's bit for bit."""
        image = item.image
        paste = item.blend is not None and target == "foreground"
        if paste:
            region = item.blend > 0
        new, box = back_to_full_resolution(
            item.working, output_low, item.guide, region, target=target, method=self.method,
            radius=self.radius, eps=self.eps, guide_is_composite=not paste,
            transform=None if params is None else transform_applier(self.runner.model, params),
            strength=strength,
        )
        r0, r1, c0, c1 = box
        inside = region[r0:r1, c0:c1]
        if paste:  # recolour the cut-out layer, then alpha-blend it on the background
            a = item.blend[r0:r1, c0:c1][..., None]
            new = new * a + item.background[r0:r1, c0:c1] * (1 - a)
        if image.pil is not None:  # composed in Pillow: the photo is never converted to an array
            out = image.pil.copy()
            out.paste(Image.fromarray(bio.to_uint8(new)), (c0, r0), Image.fromarray(inside))
            return bio.ImageData(rgb=None, alpha=None, rgb8=None, name=item.name, pil=out), box
        eight_bit = image.eight_bit
        out = (image.rgb8 if eight_bit else image.rgb).copy()
        np.copyto(out[r0:r1, c0:c1], bio.to_uint8(new) if eight_bit else new, where=inside[..., None])
        return bio.ImageData(rgb=None if eight_bit else out, alpha=None, rgb8=out if eight_bit else None, name=item.name), box

    def _as_output(self, item: Prepared, data: bio.ImageData):
        """``data`` (the result's or the composite's pixels) as the input's kind, with its alpha."""
        alpha = item.image.alpha
        if item.kind == "array":
            if item.array_dtype == np.uint8 and data.eight_bit:
                arr = data.rgb8
                if alpha is not None:
                    arr = np.dstack([arr, bio.to_uint8(alpha)])
                return arr
            arr = data.rgb8.astype(np.float32) / 255.0 if data.eight_bit else data.rgb.astype(np.float32)
            if alpha is not None:
                arr = np.dstack([arr, alpha.astype(np.float32)])
            return arr
        if alpha is None and data.pil is not None:
            return data.pil
        rgb8 = data.rgb8 if data.eight_bit else bio.to_uint8(data.rgb)
        if alpha is not None:
            return Image.fromarray(np.ascontiguousarray(np.dstack([rgb8, bio.to_uint8(alpha)])))
        return Image.fromarray(np.ascontiguousarray(rgb8))

    def process(
        self, items: Sequence[Prepared], *, target: str = "foreground", min_inharmony: float | None = None,
        keep_if_worse: bool | None = None, scores: bool = True, strength: float | None = None,
    ) -> list[HarmonizeResult]:
        """Run prepared items through the network in batches of ``batch_size`` and lift them.
        ``scores=False``: the same images without measuring inharmony (the extractor calls at
        INHARMONY_SIZE are skipped; ``before``/``after`` are NaN with the PyTorch backend)."""
        results: list[HarmonizeResult] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            outs, before, after, params = self.run_network(chunk, target=target)
            if scores:
                before = self._canonical_before(chunk, before)
            strengths = self._strengths(chunk, outs, before, target, min_inharmony, strength)
            for item, out, b, a, p, s in zip(chunk, outs, before, after, params, strengths):
                results.append(
                    self.finish(item, out, float(b), float(a), target=target, min_inharmony=min_inharmony, params=p,
                                keep_if_worse=keep_if_worse, scores=scores, strength=s)
                )
        return results

    OUTPUTS = ("image", "scores", "inharmony")

    def iter_batch(
        self,
        pairs: Iterable[tuple[Any, Any]],
        *,
        output: str = "image",
        target: str = "foreground",
        resize_mask: bool = False,
        min_inharmony: float | None = None,
        keep_if_worse: bool | None = None,
        strength: float | str | None = None,
    ) -> Iterator[BatchOutcome]:
        """Harmonize (composite, mask) pairs, ``batch_size`` per network call, and yield one
        :class:`BatchOutcome` per pair, in order; a bad item becomes an outcome with its error and
        never stops the rest. A mask of None is an error ("no mask found", with
        :attr:`bargainnet.io.ImagePair.missing` when the pairs come from :mod:`bargainnet.io`).

        ``output``: "image" (full :class:`HarmonizeResult`), "scores" (the network runs, ``before``
        and ``after`` are set, the same numbers as "image" gives: ``image`` is None) or "inharmony" (only the composite
        is scored: ``after`` is None). ``strength``: these items', None = the Harmonizer's (e.g.
        :meth:`clip_strength` for the frames of a video).
        """
        if output not in self.OUTPUTS:
            raise InputError(f"output must be one of {self.OUTPUTS}, got {output!r}")
        step = self.batch_size
        pairs = list(pairs)
        for start in range(0, len(pairs), step):
            yield from self._run_chunk(pairs, range(start, min(start + step, len(pairs))), output, target,
                                       resize_mask, min_inharmony, keep_if_worse, strength)

    def _run_chunk(self, pairs, indices, output, target, resize_mask, min_inharmony, keep_if_worse=None,
                   strength=None) -> list[BatchOutcome]:
        """The outcomes of ``pairs[indices]`` (one network call), in input order."""
        outcomes: list[BatchOutcome] = []
        prepared: list[tuple[BatchOutcome, Prepared]] = []
        for index in indices:
            pair = pairs[index]
            composite, mask = pair
            outcome = BatchOutcome(index, composite, mask)
            outcomes.append(outcome)
            if mask is None:
                outcome.error = InputError(f"no mask found {getattr(pair, 'missing', '')}".rstrip())
                continue
            try:
                prepared.append((outcome, self.prepare(composite, mask, resize_mask=resize_mask)))
            except Exception as err:  # noqa: BLE001 - one bad item never stops the rest
                outcome.error = err
        if not prepared:
            return outcomes
        items = [item for _, item in prepared]
        strengths = None  # set when the items are finished (images, or scores on the canonical scale)
        try:
            if output == "inharmony":
                distances = self._inharmony(items)
            else:
                outs, befores, afters, params = self.run_network(items, target=target)
                befores = self._canonical_before(items, befores)
                if output == "image" or (output == "scores" and self.scores_canonically):
                    try:
                        strengths = self._strengths(items, outs, befores, target, min_inharmony, strength)
                    except Exception:  # noqa: BLE001 - decided again one by one in finish: only a bad item fails
                        strengths = [strength] * len(items)
        except Exception as err:  # noqa: BLE001
            for outcome, _ in prepared:
                outcome.error = err
            return outcomes
        for k, (outcome, item) in enumerate(prepared):
            try:
                if strengths is not None:
                    # "scores" on the canonical scale measure the full-resolution result, as
                    # harmonize reports it, then drop the pixels.
                    result = self.finish(
                        item, outs[k], float(befores[k]), float(afters[k]), target=target,
                        min_inharmony=min_inharmony, params=params[k], keep_if_worse=keep_if_worse, strength=strengths[k],
                    )
                    if output == "scores":
                        result.image = result.composite = result.rgb8 = result.alpha = None
                    outcome.result = result
                    continue
                before = float(distances[k]) if output == "inharmony" else float(befores[k])
                after = None if output == "inharmony" else float(afters[k])
                outcome.result = HarmonizeResult(
                    image=None, composite=None, mask=item.mask, before=Inharmony(before, _score(before)),
                    after=None if after is None else Inharmony(after, _score(after)), target=target, name=item.name,
                )
            except Exception as err:  # noqa: BLE001
                outcome.error = err
        return outcomes

    def _inharmony(self, items: Sequence[Prepared]) -> np.ndarray:
        """Inharmony distances (B,) of prepared items: the extractor at INHARMONY_SIZE when the
        runner has one, else the full graph at the working size (ONNX)."""
        if self.scores_canonically:
            return self._canonical_before(items, None)
        return self.run_network(items)[1]

    def clip_strength(self, pairs: Iterable[tuple[Any, Any]], *, resize_mask: bool = False, frames: int = 32,
                      strength: float | str | None = None) -> tuple[float, list[float]]:
        """One strength for all the frames of a clip (a video's composites, in order) and the
        per-frame strengths it came from: with a per-image setting ("auto", "learned"; None = the
        Harmonizer's), the median of what it gives up to ``frames`` evenly spaced frames (frames
        that cannot be read are left out); a fixed strength as it is. Give it to
        :meth:`iter_batch` or :meth:`harmonize_many` (``strength=``): decided frame by frame, the
        measured strength jumps between neighbouring frames (it sits mostly at its floor or its cap),
        and the colour change flickers."""
        setting = check_strength_setting(self.strength if strength is None else strength)
        if setting not in PER_IMAGE_STRENGTHS:
            return float(setting), []
        if frames < 1:
            raise InputError(f"frames must be positive, got {frames}")
        pairs = list(pairs)
        picked = sorted({round(k) for k in np.linspace(0, len(pairs) - 1, min(frames, len(pairs)))}) if pairs else []
        items = []
        for k in picked:
            try:
                items.append(self.prepare(*pairs[k], resize_mask=resize_mask))
            except Exception:  # noqa: BLE001 - a bad frame is reported when it is harmonized
                continue
        if not items:
            raise InputError("no frame of the clip could be read to decide its strength")
        measured: list[float] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            measured += self._per_image(chunk, self.run_network(chunk)[0], "foreground", setting)
        return float(np.median(measured)), measured

    # -- public API ------------------------------------------------------------------------
    def harmonize(
        self, composite, mask, *, resize_mask: bool = False, min_inharmony: float | None = None,
        keep_if_worse: bool | None = None, strength: float | None = None,
    ) -> HarmonizeResult:
        """Harmonize one composite's foreground; returns the full :class:`HarmonizeResult`
        (``keep_if_worse``: return the composite unchanged when the inharmony rose; ``strength``:
        this call's, None = the Harmonizer's)."""
        item = self.prepare(composite, mask, resize_mask=resize_mask)
        return self.process([item], min_inharmony=min_inharmony, keep_if_worse=keep_if_worse, strength=strength)[0]

    def __call__(self, composite, mask, *, resize_mask: bool = False, min_inharmony: float | None = None,
                 strength: float | None = None):
        """Harmonize ``composite`` (path, PIL image or array) given its ``mask``; returns an image
        of the input's size and kind (PIL image, or array for array input) — the same image as
        :meth:`harmonize`, without measuring inharmony unless a threshold or ``keep_if_worse``
        needs it."""
        item = self.prepare(composite, mask, resize_mask=resize_mask)
        needed = (min_inharmony if min_inharmony is not None else self.min_inharmony) is not None or self.keep_if_worse
        return self.process([item], min_inharmony=min_inharmony, scores=needed, strength=strength)[0].image

    def harmonize_many(
        self, pairs: Iterable[tuple[Any, Any]], *, resize_mask: bool = False, min_inharmony: float | None = None,
        keep_if_worse: bool | None = None, strength: float | None = None,
    ) -> list[HarmonizeResult]:
        """Harmonize (composite, mask) pairs, ``batch_size`` images per network call."""
        items = [self.prepare(c, m, resize_mask=resize_mask) for c, m in pairs]
        return self.process(items, min_inharmony=min_inharmony, keep_if_worse=keep_if_worse, strength=strength)

    def paste(
        self, foreground, background, position: tuple[int, int] | None = None, scale: float = 1.0,
        *, min_inharmony: float | None = None, keep_if_worse: bool | None = None, strength: float | None = None,
    ) -> HarmonizeResult:
        """Paste a cut-out with alpha on a background and harmonize it (see :meth:`prepare_paste`)."""
        item = self.prepare_paste(foreground, background, position, scale)
        return self.process([item], min_inharmony=min_inharmony, keep_if_worse=keep_if_worse, strength=strength)[0]

    def harmonize_background(self, composite, mask, *, resize_mask: bool = False, min_inharmony: float | None = None,
                             strength: float | None = None):
        """Background harmonization (paper §4.6): the background is translated to the foreground's
        domain; the foreground pixels stay bit-identical. Returns an image like :meth:`__call__`."""
        item = self.prepare(composite, mask, resize_mask=resize_mask)
        return self.process([item], target="background", min_inharmony=min_inharmony, strength=strength)[0].image

    def score(self, composite, mask, *, resize_mask: bool = False) -> Inharmony:
        """Inharmony of a composite: distance d(z_b, z̃_f) at 256×256 whatever the working size, and its score."""
        distance = float(self._inharmony([self.prepare(composite, mask, resize_mask=resize_mask)])[0])
        return Inharmony(distance, _score(distance))


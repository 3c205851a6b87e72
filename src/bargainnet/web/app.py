"""The ``bargainnet serve`` web app: harmonize your own images in the browser, at full resolution.

Two ways in, both through :class:`bargainnet.inference.Harmonizer` (the CLI's code path):

* **composite + mask**: upload a composite and its mask, or paint the mask on the composite;
  optionally harmonize the background instead (paper §4.6);
* **cut-out + background**: an RGBA cut-out (its alpha is the mask) pasted on a background at a
  chosen centre and scale, with a live low-resolution preview of the paste.

The page shows the input and the result with a before/after slider (previews, long side <=
:data:`PREVIEW_SIDE`), the inharmony distance d(z_b, z̃_f) before and after (flagged when it got
worse), and offers the full-resolution result as a PNG whose background pixels are the input's,
bit for bit.

HTTP API (for scripts; see the README's "Web app"): ``/harmonize`` (composite, mask,
harmonize_background, resize_mask) and ``/paste`` (cutout, background, x, y, scale) each return
the result PNG and a JSON summary; a bad input raises an error with a clear message.

The handlers are plain functions of a :class:`WebApp` (no server needed to test them); only
:meth:`WebApp.build` and :func:`launch` need gradio, imported there.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import io as bio
from ..errors import InputError, UserError
from ..inference import Harmonizer
from ..models.base import AUTO_STRENGTH, LEARNED_STRENGTH, PER_IMAGE_STRENGTHS, STRENGTH_RANGE

log = logging.getLogger("bargainnet.web")

PREVIEW_SIDE = 1600  # long side of the before/after previews; the download is full resolution
EDITOR_SIDE = 1024  # long side of the image shown for painting a mask (the mask is scaled up)
PASTE_PREVIEW_SIDE = 768  # long side of the live paste preview
KEEP_RESULTS_S = 3600  # results older than this are deleted from the app's folder
PNG_LEVEL = 3  # zlib level of the downloads: lossless either way, level 6+ is ~2x slower on 12 MP

REPO = Path(__file__).resolve().parents[3]  # a source checkout: examples/ and docs/ live here


def find_examples() -> Path | None:
    """The bundled ``examples/`` folder of a source checkout (or of the working directory)."""
    for root in (REPO, Path.cwd()):
        folder = root / "examples"
        if (folder / "meadow_squirrel.jpg").is_file():
            return folder
    return None


def find_model_card() -> Path | None:
    for root in (REPO, Path.cwd()):
        card = root / "docs" / "model-card.md"
        if card.is_file():
            return card
    return None


def example_pairs(folder: Path | None) -> list[list[str]]:
    """[composite, mask] of every ``<stem>.jpg`` with a ``<stem>_mask.png`` in ``folder``."""
    if folder is None:
        return []
    pairs = []
    for image in sorted(folder.glob("*.jpg")):
        mask = image.with_name(image.stem + "_mask.png")
        if mask.is_file():
            pairs.append([str(image), str(mask)])
    return pairs


# -- results -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One harmonized request.

    Attributes:
        png: the full-resolution result (PNG; alpha kept when the input had one).
        before_preview, after_preview: previews of the input (in paste mode: the pasted
            composite) and of the result: PNG, or JPEG reduced to long side PREVIEW_SIDE.
        info: JSON-able summary: name, width, height, target ("foreground"/"background"),
            before/after {distance, score}, got_worse, skipped, seconds (reading, harmonizing
            and writing the PNG and previews).
    """

    png: Path
    before_preview: Path
    after_preview: Path
    info: dict


def _display_name(path: Any) -> str:
    return Path(str(path)).name if isinstance(path, (str, os.PathLike)) else "image"


def user_message(err: BaseException, inputs: dict[str, Any] | None = None) -> str:
    """A one-paragraph message for the page: the error's text with upload folders shortened to
    file names and CLI-only hints replaced by the page's controls. Bugs become a short notice
    (the traceback goes to the server log, never to the user)."""
    if isinstance(err, UserError):
        message = str(err)
        for path in (inputs or {}).values():
            if isinstance(path, (str, os.PathLike)):
                message = message.replace(str(path), _display_name(path))
        message = message.replace(
            "pass --resize-mask (resize_mask=True) to resize it", "tick \u201cresize a mask of another size\u201d to resize it"
        )
        return message
    if isinstance(err, MemoryError):
        return "out of memory: this image is too large for this machine; try a smaller one"
    return f"internal error ({type(err).__name__}); the server log has the details"


def _bounded(image: Image.Image, side: int) -> Image.Image:
    if max(image.size) <= side:
        return image
    small = image.copy()
    small.thumbnail((side, side), Image.LANCZOS)
    return small


def _save_png(image: Image.Image, path: Path, level: int = PNG_LEVEL) -> Path:
    return bio.atomic_save_pil(image, path, format="PNG", compress_level=level)


def _save_preview(image: Image.Image, stem: Path) -> Path:
    """A display copy: the image itself as PNG when it is small enough, else reduced to
    PREVIEW_SIDE and written as JPEG (a 1600 px PNG takes ~10x longer to encode)."""
    if max(image.size) <= PREVIEW_SIDE:
        return _save_png(image, stem.with_suffix(".png"), 1)
    small = _bounded(image.convert("RGB"), PREVIEW_SIDE)
    return bio.atomic_save_pil(small, stem.with_suffix(".jpg"), format="JPEG", quality=92)


class WebApp:
    """The app's state (one :class:`Harmonizer`, a folder for results) and its request handlers.

    Args:
        harmonizer: used for every request (thread-safe: requests share only the model).
        weights: the weights file it was loaded from (None = the default model), for the panel.
        workdir: where results are written (default: a new temporary folder, removed by
            :meth:`close`).
        examples: the examples folder (default: :func:`find_examples`); None = no examples.
    """

    def __init__(self, harmonizer: Harmonizer, *, weights: str | os.PathLike | None = None,
                 workdir: str | os.PathLike | None = None, examples: Path | None | str = "auto"):
        self.harmonizer = harmonizer
        self.weights = weights
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="bargainnet-web-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.examples = find_examples() if examples == "auto" else (Path(examples) if examples else None)
        self._cleanup_lock = threading.Lock()
        self._last_cleanup = 0.0

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- files -----------------------------------------------------------------------------------
    def _request_dir(self) -> Path:
        """A fresh folder per request (parallel requests never share a file name)."""
        self._cleanup()
        folder = self.workdir / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def _cleanup(self) -> None:
        now = time.time()
        with self._cleanup_lock:
            if now - self._last_cleanup < 60:
                return
            self._last_cleanup = now
        for folder in self.workdir.iterdir():
            try:
                if folder.is_dir() and now - folder.stat().st_mtime > KEEP_RESULTS_S:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:  # another request removed it first
                pass

    def _outcome(self, result, name: str, start: float) -> Outcome:
        folder = self._request_dir()
        stem = Path(name).stem or "image"
        png = _save_png(result.image, folder / f"{stem}_harmonized.png")
        before = _save_preview(result.composite, folder / "before")
        after = _save_preview(result.image, folder / "after")
        b, a = result.before, result.after
        width, height = result.image.size
        info = {
            "name": name, "width": width, "height": height, "target": result.target,
            "before": {"distance": round(float(b.distance), 4), "score": round(float(b.score), 4)},
            "after": {"distance": round(float(a.distance), 4), "score": round(float(a.score), 4)},
            "got_worse": bool(result.got_worse),
            "skipped": bool(result.skipped), "strength": round(float(result.strength), 3),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return Outcome(png, before, after, info)

    # -- the two ways in ---------------------------------------------------------------------
    def harmonize(self, composite, mask, *, background: bool = False, resize_mask: bool = False,
                  strength: float | None = None) -> Outcome:
        """Harmonize ``composite`` (path) given ``mask`` (path, or an array such as a painted
        mask); ``background=True`` translates the background to the foreground's domain instead;
        ``strength`` (None = the model's) scales the change. Raises :class:`InputError` on bad input."""
        if composite is None:
            raise InputError("no composite: upload the composite image first")
        if mask is None:
            raise InputError("no mask: upload a mask (white = foreground) or paint over the object on the composite")
        start = time.perf_counter()
        h = self.harmonizer
        if background:
            result = h.process([h.prepare(composite, mask, resize_mask=resize_mask)], target="background",
                               strength=strength)[0]
        else:
            result = h.harmonize(composite, mask, resize_mask=resize_mask, strength=strength)
        return self._outcome(result, _display_name(composite), start)

    def paste(self, cutout, background, *, position: tuple[int, int] | None = None, scale: float = 1.0,
              strength: float | None = None) -> Outcome:
        """Paste ``cutout`` (RGBA path; its alpha is the mask) on ``background`` with its top-left
        corner at ``position`` (background pixels, None = centred) after scaling by ``scale``,
        and harmonize it."""
        if cutout is None or background is None:
            raise InputError("upload both the cut-out (a PNG with transparency) and the background photo")
        start = time.perf_counter()
        result = self.harmonizer.paste(cutout, background, position=position, scale=float(scale), strength=strength)
        name = f"{Path(_display_name(cutout)).stem}_on_{_display_name(background)}"
        return self._outcome(result, name, start)

    # -- helpers of the page ------------------------------------------------------------------
    def editor_value(self, composite) -> dict | None:
        """The mask painter's value for a new composite: the composite (long side <=
        :data:`EDITOR_SIDE`) as the background, no strokes. None when there is no composite or it
        cannot be read (the harmonize button reports why)."""
        if composite is None:
            return None
        try:
            image = bio.open_image(composite, max_pixels=self.harmonizer.max_pixels, draft_long_side=EDITOR_SIDE)
        except (UserError, OSError):
            return None
        small = _bounded(image.convert("RGB"), EDITOR_SIDE)
        path = _save_png(small, self._request_dir() / "paint.png", 1)
        return {"background": str(path), "layers": [], "composite": None}

    def paste_position(self, cutout, background, cx: float, cy: float, scale: float) -> tuple[int, int]:
        """Top-left corner (background pixels) that puts the scaled cut-out's centre at (cx, cy)
        percent of the background's width and height."""
        fw, fh = _image_size(str(cutout))
        bw, bh = _image_size(str(background))
        w, h = max(1, round(fw * scale)), max(1, round(fh * scale))
        return round(cx / 100 * bw - w / 2), round(cy / 100 * bh - h / 2)

    def paste_preview(self, cutout, background, cx: float, cy: float, scale: float) -> np.ndarray:
        """A quick look at the paste, long side <= :data:`PASTE_PREVIEW_SIDE`: uint8 (h, w, 3)."""
        if cutout is None or background is None:
            raise InputError("upload both the cut-out and the background to see the paste")
        if not scale > 0:
            raise InputError(f"scale must be > 0, got {scale}")
        limit = self.harmonizer.max_pixels
        bg = _preview_image(str(background), _mtime(background), "RGB", limit)
        fg = _preview_image(str(cutout), _mtime(cutout), "RGBA", limit)
        if fg.mode != "RGBA":
            raise InputError(
                f"{_display_name(cutout)}: the cut-out has no alpha channel; its alpha is the mask (use an RGBA PNG)"
            )
        x, y = self.paste_position(cutout, background, cx, cy, scale)
        bw, _ = _image_size(str(background))
        fw, fh = _image_size(str(cutout))
        f = bg.width / bw  # preview pixels per background pixel
        size = (max(1, round(fw * scale * f)), max(1, round(fh * scale * f)))
        layer = fg.resize(size, Image.BILINEAR)
        canvas = bg.convert("RGBA")
        canvas.paste(layer, (round(x * f), round(y * f)), layer)
        return np.asarray(canvas.convert("RGB"))

    def painted_mask(self, editor: dict | None, composite) -> np.ndarray | None:
        """The painted strokes of the mask painter as a full-resolution mask, uint8 (H, W) in
        {0, 255} at the composite's size; None when nothing was painted."""
        layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or [] if layer is not None]
        layers = [layer for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
        if not layers:
            return None
        painted = np.zeros(layers[0].shape[:2], bool)
        for layer in layers:
            if layer.shape[:2] == painted.shape:
                painted |= layer[..., 3] > 0
        if not painted.any():
            return None
        width, height = _image_size(str(composite))
        full = Image.fromarray(painted.astype(np.uint8) * 255).resize((width, height), Image.BILINEAR)
        return np.where(np.asarray(full) >= 128, 255, 0).astype(np.uint8)

    def weights_info(self) -> dict:
        """What the model panel shows: file, architecture, working size, training data, backend."""
        from importlib.resources import files

        path = Path(self.weights) if self.weights else Path(str(files("bargainnet").joinpath("weights/default.safetensors")))
        info: dict[str, Any] = {"file": path.name if self.weights else "default model (bundled)",
                                "working size": f"{self.harmonizer.size}\u00d7{self.harmonizer.size}",
                                "backend": self.harmonizer.backend,
                                "processing": f"{self.harmonizer.full_resolution}; strength "
                                              f"{self.harmonizer.strength_text} unless the page says otherwise"}
        meta: dict = {}
        if path.suffix.lower() == ".safetensors":
            try:
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    meta = dict(f.metadata() or {})
            except Exception:  # noqa: BLE001 - the panel is informative only
                meta = {}
        config = {}
        if "config" in meta:
            import json

            try:
                config = json.loads(meta["config"])
            except ValueError:
                config = {}
        if not config:
            runner_config = getattr(self.harmonizer.runner, "config", None)
            config = runner_config if isinstance(runner_config, dict) else getattr(runner_config, "to_dict", dict)()
        if config:
            parts = [f"ngf {config.get('ngf', '?')}", f"{config.get('num_downs', '?')} levels",
                     f"code length {config.get('code_dim', '?')}"]
            if config.get("use_code") is False:
                parts.append("no domain code")
            if config.get("use_mask") is False:
                parts.append("no mask input")
            if config.get("encoder_width", 64) != 64:
                parts.append(f"extractor width {config['encoder_width']}")
            if config.get("output", "rgb") != "rgb":
                parts.append(f"output: {config['output']} colour transform")
            if config.get("hint", "none") != "none":
                parts.append(f"hint: {config['hint']}")
            info["architecture"] = "BargainNet, " + ", ".join(parts)
        trained = meta.get("trained_on")
        if trained:
            step = meta.get("training_step", "")
            if step.isdigit():
                trained += f" ({step} steps)"
            elif step == "averaged":  # export-weights RUN1 RUN2 ...: a weight average of several runs
                trained += " (weights averaged over several runs)"
            info["training data"] = trained
        else:
            info["training data"] = "not recorded in the weights file"
        device = getattr(self.harmonizer.runner, "device", None)
        if device:
            info["device"] = str(device)
        return info

    def weights_markdown(self) -> str:
        info = self.weights_info()
        rows = "\n".join(f"- **{k}**: {v}" for k, v in info.items())
        card = "the model card (at the bottom of the page; `docs/model-card.md`)" if find_model_card() else "`docs/model-card.md`"
        return f"**Loaded model**\n\n{rows}\n\nWhat it was trained on, its scores and its limits: {card}."


def scores_markdown(info: dict) -> str:
    """The before/after inharmony table for the page (and the "got worse" flag)."""
    b, a = info["before"], info["after"]
    what = "background harmonized (paper \u00a74.6)" if info["target"] == "background" else "foreground harmonized"
    table = (
        f"**{info['name']}** \u2014 {info['width']}\u00d7{info['height']}, {what}, strength {info['strength']:.2f}, "
        f"{info['seconds']:.2f} s\n\n"
        "| | inharmony distance d(z_b, z\u0303_f) \u2193 | harmony score exp(\u22120.04212\u00b7d) \u2191 |\n"
        "|---|---:|---:|\n"
        f"| before (input) | {b['distance']:.3f} | {b['score']:.3f} |\n"
        f"| after (result) | {a['distance']:.3f} | {a['score']:.3f} |\n"
    )
    if info["got_worse"]:
        table += "\n**Got worse**: the model rates its result less harmonious than the input (after > before)."
    elif info["skipped"]:
        table += "\nLeft untouched: the input is already harmonious enough."
    return table


@lru_cache(maxsize=16)
def _preview_image(path: str, mtime: float, mode: str, max_pixels: int | None) -> Image.Image:
    """A decoded copy, long side <= PASTE_PREVIEW_SIDE (slider moves reuse it)."""
    image = bio.open_image(path, max_pixels=max_pixels, draft_long_side=PASTE_PREVIEW_SIDE)
    if mode == "RGBA" and not ("A" in image.mode or "transparency" in image.info):
        return _bounded(image.convert("RGB"), PASTE_PREVIEW_SIDE)
    return _bounded(image.convert(mode), PASTE_PREVIEW_SIDE)


def _mtime(path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=64)
def _image_size_cached(path: str, mtime: float) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            size = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation swaps the sides
                size = size[::-1]
            return size
    except (OSError, Image.DecompressionBombError, ValueError) as err:
        raise InputError(f"{_display_name(path)}: cannot read this image ({err.__class__.__name__})") from None


def _image_size(path: str) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header."""
    return _image_size_cached(path, _mtime(path))


# -- the Gradio page -----------------------------------------------------------------------------
class WebUnavailableError(UserError):
    """gradio is not installed."""


def _gradio():
    try:
        import gradio as gr
    except ImportError:
        raise WebUnavailableError('the web app needs gradio: pip install "bargainnet[web]"') from None
    return gr


def raw_upload(component, gr):
    """Make an image upload reach the handler as the uploaded file's path, undecoded, so that
    :mod:`bargainnet.io` reads it (EXIF, 16 bits, our pixel limit) and a bad file gets the
    library's clear message instead of a decoding error inside gradio before the handler runs.
    (An instance attribute, not a subclass: gradio writes a ``.pyi`` file beside the module of
    every component subclass.)"""

    def preprocess(payload):
        if payload is None:
            return None
        if payload.path is None:
            raise gr.Error("the image did not arrive; upload it again")
        return str(payload.path)

    component.preprocess = preprocess
    return component


def make_cutout_example(examples: Path | None, folder: Path) -> list[list]:
    """[cut-out, background, centre x %, centre y %, scale] rows for the paste tab, made from the
    bundled squirrel and its mask (the examples folder has no cut-out of its own)."""
    if examples is None:
        return []
    image, mask, backdrop = (examples / n for n in ("meadow_squirrel.jpg", "meadow_squirrel_mask.png", "cafeteria_person.jpg"))
    if not (image.is_file() and mask.is_file() and backdrop.is_file()):
        return []
    rgb = np.asarray(Image.open(image).convert("RGB"))
    alpha = np.where(np.asarray(Image.open(mask).convert("L")) >= 128, 255, 0).astype(np.uint8)
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    crop = np.dstack([rgb, alpha])[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    cutout = _save_png(Image.fromarray(crop), folder / "squirrel_cutout.png")
    return [[str(cutout), str(backdrop), 30.0, 75.0, 0.6]]


CSS = """
#status p { font-size: 1.05em; }
#model-panel table { font-size: 0.85em; }
"""


def build_blocks(app: WebApp):
    """The page (a ``gr.Blocks``) around ``app``'s handlers; call ``.queue()`` and ``.launch()``
    on it (see :func:`launch`)."""
    gr = _gradio()

    def ImageFile(**kwargs):  # noqa: N802 - reads like the component it makes
        return raw_upload(gr.Image(**kwargs), gr)

    low, high = STRENGTH_RANGE

    decided = app.harmonizer.strength in PER_IMAGE_STRENGTHS  # the model's setting decides per image
    per_image = app.harmonizer.strength if decided else AUTO_STRENGTH  # what the box below asks for

    def strength_controls(elem_id: str):
        """The strength slider and, beside it, the box that decides it per image instead."""
        with gr.Row():
            slider = gr.Slider(low, high, value=app.harmonizer.calibration.fallback if decided else app.harmonizer.strength,
                               step=0.05, elem_id=elem_id, scale=3,
                               label="Strength (1 = the model's result, 0 = unchanged, above 1 = amplified)")
            how = "learned, by the model's strength head" if per_image == LEARNED_STRENGTH else "auto"
            measure = gr.Checkbox(value=decided, elem_id=f"{elem_id}-auto", scale=1,
                                  label=f"Decide it for each image ({how}; ignores the slider)")
        return slider, measure

    def failed(err: BaseException, inputs: dict) -> str:
        if not isinstance(err, UserError):
            log.exception("request failed")
        return user_message(err, inputs)

    def shown(outcome: Outcome):
        info = outcome.info
        what = "background" if info["target"] == "background" else "foreground"
        status = (f"**Done.** Harmonized the {what} of {info['name']} ({info['width']}\u00d7{info['height']}) "
                  f"in {info['seconds']:.2f} s; the full-resolution PNG is ready to download.")
        return (str(outcome.before_preview), str(outcome.after_preview)), str(outcome.png), scores_markdown(info), status

    def ui_harmonize(composite, mask, painter, background, resize_mask, strength, measure):
        inputs = {"composite": composite, "mask": mask}
        try:
            if composite is None:
                raise InputError("no composite: upload the composite image first (or click an example)")
            painted = app.painted_mask(painter, composite)
            return shown(app.harmonize(composite, painted if painted is not None else mask,
                                       background=bool(background), resize_mask=bool(resize_mask),
                                       strength=per_image if measure else strength))
        except Exception as err:  # noqa: BLE001 - the page shows a message; the server keeps running
            message = failed(err, inputs)
            gr.Warning(message)
            return None, None, "", f"**Error:** {message}"

    def ui_paste(cutout, backdrop, cx, cy, scale, strength, measure):
        inputs = {"cutout": cutout, "background": backdrop}
        try:
            if cutout is None or backdrop is None:
                raise InputError("upload both the cut-out (a PNG with transparency) and the background photo")
            position = app.paste_position(cutout, backdrop, cx, cy, scale)
            return shown(app.paste(cutout, backdrop, position=position, scale=scale,
                                   strength=per_image if measure else strength))
        except Exception as err:  # noqa: BLE001
            message = failed(err, inputs)
            gr.Warning(message)
            return None, None, "", f"**Error:** {message}"

    def ui_preview(cutout, backdrop, cx, cy, scale):
        if cutout is None or backdrop is None:
            return None, ""
        try:
            return app.paste_preview(cutout, backdrop, cx, cy, scale), ""
        except Exception as err:  # noqa: BLE001
            return None, f"**Error:** {failed(err, {'cutout': cutout, 'background': backdrop})}"

    def ui_editor(composite):
        return app.editor_value(composite)

    def api_harmonize(composite, mask, harmonize_background, resize_mask, strength=None):
        try:
            outcome = app.harmonize(composite, mask, background=bool(harmonize_background), resize_mask=bool(resize_mask),
                                    strength=strength)
        except Exception as err:  # noqa: BLE001
            raise gr.Error(failed(err, {"composite": composite, "mask": mask})) from None
        return str(outcome.png), outcome.info

    def api_paste(cutout, background, x, y, scale, strength=None):
        try:
            position = None if x is None or y is None else (int(x), int(y))
            outcome = app.paste(cutout, background, position=position, scale=1.0 if scale is None else float(scale),
                                strength=strength)
        except Exception as err:  # noqa: BLE001
            raise gr.Error(failed(err, {"cutout": cutout, "background": background})) from None
        return str(outcome.png), outcome.info

    private = dict(api_visibility="private")
    harmonize_group = dict(concurrency_id="harmonize")
    with gr.Blocks(title="bargainnet \u2014 image harmonization", analytics_enabled=False,
                   delete_cache=(KEEP_RESULTS_S, KEEP_RESULTS_S)) as demo:
        gr.Markdown(
            "# bargainnet \u2014 image harmonization\n"
            "Make a pasted object match the colours and lighting of its background "
            "(BargainNet, ICME 2021). Everything runs on this machine, at your image's full "
            "resolution, with the same code as `bargainnet harmonize`; background pixels are kept bit for bit."
        )
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab("Composite + mask", id="composite"):
                        with gr.Row():
                            composite = ImageFile(label="Composite", type="filepath", image_mode=None, height=240,
                                                  sources=["upload", "clipboard"], elem_id="composite")
                            mask = ImageFile(label="Mask (white = foreground)", type="filepath", image_mode=None,
                                             height=240, sources=["upload", "clipboard"], elem_id="mask")
                        painter = gr.ImageEditor(
                            label="\u2026or paint the mask over the composite (painted strokes replace an uploaded mask)",
                            type="numpy", image_mode="RGBA", format="png", sources=[], transforms=(), layers=False,
                            brush=gr.Brush(colors=["#ff2d6f"], color_mode="fixed", default_size=24),
                            height=340, elem_id="painter",
                        )
                        with gr.Row():
                            background = gr.Checkbox(
                                label="Harmonize the background instead (paper \u00a74.6): "
                                      "the background takes the foreground's look",
                                elem_id="harmonize-background")
                            resize_mask = gr.Checkbox(label="Resize a mask of another size", elem_id="resize-mask")
                        strength, measure = strength_controls("strength")
                        run = gr.Button("Harmonize", variant="primary", elem_id="harmonize")
                        pairs = example_pairs(app.examples)
                        if pairs:
                            gr.Examples(pairs, inputs=[composite, mask], label="Bundled examples (click one, then Harmonize)")
                    with gr.Tab("Cut-out + background", id="paste"):
                        with gr.Row():
                            cutout = ImageFile(label="Cut-out (PNG with transparency: its alpha is the mask)", type="filepath",
                                               image_mode=None, height=240, sources=["upload", "clipboard"],
                                               elem_id="cutout")
                            backdrop = ImageFile(label="Background photo", type="filepath", image_mode=None, height=240,
                                                 sources=["upload", "clipboard"], elem_id="backdrop")
                        with gr.Row():
                            cx = gr.Slider(0, 100, value=50, step=0.5, label="Centre x (%)")
                            cy = gr.Slider(0, 100, value=50, step=0.5, label="Centre y (%)")
                            scale = gr.Slider(0.05, 4, value=1, step=0.01, label="Scale")
                        paste_strength, paste_measure = strength_controls("paste-strength")
                        preview = gr.Image(label="Paste preview (live, reduced)", interactive=False, type="numpy",
                                           format="jpeg", height=320, elem_id="paste-preview")
                        paste_run = gr.Button("Harmonize the paste", variant="primary", elem_id="harmonize-paste")
                        rows = make_cutout_example(app.examples, app.workdir / "examples")
                        if rows:
                            gr.Examples(rows, inputs=[cutout, backdrop, cx, cy, scale],
                                        label="Example (click, then Harmonize the paste)")
            with gr.Column(scale=1):
                status = gr.Markdown("Upload a composite and its mask, or click an example.", elem_id="status")
                slider = gr.ImageSlider(label="Before / after (drag the handle)", type="filepath", format="png",
                                        interactive=False, max_height=520, elem_id="before-after")
                scores = gr.Markdown(elem_id="scores")
                download = gr.File(label="Full-resolution result (PNG)", interactive=False, elem_id="download")
                gr.Markdown(app.weights_markdown(), elem_id="model-panel")
        card = find_model_card()
        if card is not None:
            with gr.Accordion("Model card (docs/model-card.md)", open=False, elem_id="model-card"):
                gr.Markdown(card.read_text(encoding="utf-8"))
        # The HTTP API: plain file inputs (no painting) and a JSON summary; see the README.
        with gr.Column(visible=False):
            api_composite, api_mask = gr.File(label="composite"), gr.File(label="mask")
            api_background = gr.Checkbox(label="harmonize_background")
            api_resize = gr.Checkbox(label="resize_mask")
            api_cutout, api_backdrop = gr.File(label="cutout"), gr.File(label="background")
            api_x, api_y = gr.Number(label="x", value=None), gr.Number(label="y", value=None)
            api_scale = gr.Number(label="scale", value=1.0)
            api_strength = gr.Number(label="strength", value=None)
            api_png, api_info = gr.File(label="result"), gr.JSON(label="info")
            api_button, api_paste_button = gr.Button(), gr.Button()

        outputs = [slider, download, scores, status]
        composite.change(ui_editor, composite, painter, **private)
        run.click(ui_harmonize, [composite, mask, painter, background, resize_mask, strength, measure], outputs, **private,
                  **harmonize_group)
        paste_inputs = [cutout, backdrop, cx, cy, scale]
        for control in paste_inputs:
            control.change(ui_preview, paste_inputs, [preview, status], trigger_mode="always_last",
                           show_progress="hidden", **private)
        paste_run.click(ui_paste, [*paste_inputs, paste_strength, paste_measure], outputs, **private, **harmonize_group)
        api_button.click(api_harmonize, [api_composite, api_mask, api_background, api_resize, api_strength],
                         [api_png, api_info], api_name="harmonize", **harmonize_group)
        api_paste_button.click(api_paste, [api_cutout, api_backdrop, api_x, api_y, api_scale, api_strength],
                               [api_png, api_info], api_name="paste", **harmonize_group)
    return demo


def launch(app: WebApp, *, host: str = "127.0.0.1", port: int = 7860, concurrency: int = 2,
           max_file_size: str | int | None = "200mb", max_queue: int = 64):
    """Build the page and start the server in a background thread; returns the ``gr.Blocks``
    (its ``local_url``; stop it with ``.close()``). At most ``concurrency`` harmonizations run at
    once, up to ``max_queue`` more wait; uploads over ``max_file_size`` are refused."""
    gr = _gradio()
    demo = build_blocks(app)
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    allowed = [str(app.workdir)] + ([str(app.examples)] if app.examples else [])
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, inbrowser=False,
                allowed_paths=allowed, max_file_size=max_file_size, ssr_mode=False, show_error=False,
                theme=theme, css=CSS, mcp_server=False, pwa=False, enable_monitoring=False)
    return demo

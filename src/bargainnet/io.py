"""Reading composites and masks, writing results: the rules every command and the Python API share.

Images (:func:`load_image`) may be given as a path, a ``PIL.Image.Image`` or a numpy array, and
come back as an :class:`ImageData`: float32 RGB in [0, 1] of shape (H, W, 3), the alpha channel
(H, W) when there is one, and the exact 8-bit RGB pixels when the source had 8 bits per channel
(so that background pixels can be written back bit-identical).

Conversion rules (Pillow modes):

==========================  ==================================================================
source                      becomes
==========================  ==================================================================
``RGB``                     as is
``RGBA``, ``LA``, ``PA``,   RGB colour; the alpha channel is kept separately and written back
``P``/``L`` with a          unchanged in the output (PNG, WebP, TIFF)
transparency key
``L``, ``1``                gray replicated to three channels (the output is RGB: harmonizing
                            changes colours)
``P`` (palette)             expanded to RGB through its palette
``I;16*``, ``I`` (16-bit    gray, scaled by 1/65535, replicated to three channels; computed at
gray PNG/TIFF)              full precision, written back at 8 bits
``F`` (32-bit float)        gray, taken as [0, 1] and clipped
``CMYK``, ``YCbCr``,        converted with Pillow's ``convert("RGB")``
``LAB``, ``HSV``
16-bit RGB PNG              Pillow decodes it at 8 bits per channel; processed as 8-bit RGB
==========================  ==================================================================

numpy arrays: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; ``uint8`` is divided by 255,
``uint16`` by 65535, floating point must already lie in [0, 1].

EXIF orientation is honoured (the image is rotated/flipped as a viewer shows it, and the output
is written upright, without the orientation tag).

Masks (:func:`load_mask`): the alpha channel is the mask only when it marks a region (clearly
transparent, <= 10 %, and opaque, >= 50 %, parts: :func:`alpha_marks_region`); a
near-constant alpha (253..255, 217..255, as in some published composite sets) is ignored and the
gray level (Pillow's ``convert("L")`` for colour masks) is used. A "mask" that looks like a photo
(at least half its pixels between 10 % and 90 % gray, and a tenth of them tinted) is refused,
with a hint about the argument order; JPEG masks pass (their compression noise stays near black
and white, and the threshold ignores it). It is binarised at
:data:`MASK_THRESHOLD` = 0.5 of full scale: a pixel is foreground when its value is >= 0.5, i.e.
>= 128 for an 8-bit mask. A mask whose size differs from the composite is an error unless
``resize=True`` (bilinear on the gray level, then the threshold). A mask with no foreground pixel
or with no background pixel is an error: BargainNet needs both.

Limits: images with more than :data:`DEFAULT_MAX_PIXELS` pixels (or the limit passed, or the
``BARGAINNET_MAX_PIXELS`` environment variable) are refused before being decoded
(decompression-bomb guard). Truncated and unreadable files are errors, never padded.

Writing (:func:`save_image`) is atomic (a temporary file in the destination folder, then
``os.replace``) and refuses to overwrite any of the inputs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import InputError, OutputError

#: Default pixel limit: 100 megapixels (a 4000x3000 photo has 12).
DEFAULT_MAX_PIXELS = 100_000_000
#: A mask pixel is foreground when its value (scaled to [0, 1]) is at least this.
MASK_THRESHOLD = 0.5
#: Extensions written by :func:`save_image`, and read in folder mode.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
_ALPHA_FORMATS = {".png", ".tif", ".tiff", ".webp"}
_FORMAT_BY_EXT = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
    ".webp": "WEBP", ".bmp": "BMP",
}

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageData:
    """A decoded image.

    Attributes:
        rgb: float32 (H, W, 3) in [0, 1]. For 8-bit sources it is made from ``rgb8`` on first use
            (a 12-megapixel photo's float copy is 144 MB; the colour-transform path never needs it).
        alpha: float32 (H, W) in [0, 1], or None when the source had no alpha channel.
        rgb8: uint8 (H, W, 3), the exact source pixels, when the source had 8 bits per channel
            (made from ``pil`` on first use when there is one); None otherwise (16-bit, float).
        name: where it came from (a path, or "<PIL image>", "<array>"), for messages.
        path: the resolved path when loaded from a file, else None.
        pil: the same pixels as an RGB Pillow image, when the source was one (or a file) without
            alpha: resizes, crops and outputs start from it, so a large photo is not converted to
            and from an array (~25 ms each way at 12 megapixels). Read-only, like ``rgb8``.
    """

    def __init__(
        self,
        rgb: np.ndarray | None,
        alpha: np.ndarray | None,
        rgb8: np.ndarray | None,
        name: str,
        path: Path | None = None,
        pil: Image.Image | None = None,
    ):
        if rgb is None and rgb8 is None and pil is None:
            raise ValueError("ImageData needs rgb, rgb8 or pil")
        self._rgb, self.alpha, self._rgb8, self.name, self.path, self.pil = rgb, alpha, rgb8, name, path, pil

    @property
    def rgb8(self) -> np.ndarray | None:
        if self._rgb8 is None and self.pil is not None:
            self._rgb8 = np.asarray(self.pil)
        return self._rgb8

    @property
    def eight_bit(self) -> bool:
        """Whether the source had 8 bits per channel (``rgb8`` is not None), without converting."""
        return self._rgb8 is not None or self.pil is not None

    def crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """:attr:`pixels` of ``box`` = (r0, r1, c0, c1), end-exclusive (from ``pil`` when there is one)."""
        r0, r1, c0, c1 = box
        if self._rgb8 is None and self.pil is not None:
            return np.asarray(self.pil.crop((c0, r0, c1, r1)))
        return self.pixels[r0:r1, c0:c1]

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = to_float(self.rgb8)
        return self._rgb

    @property
    def pixels(self) -> np.ndarray:
        """``rgb8`` when the source had 8 bits per channel, else ``rgb``: the cheapest exact view."""
        return self.rgb8 if self.eight_bit else self.rgb

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow reports sizes."""
        if self.pil is not None:
            return self.pil.size
        return (self.pixels.shape[1], self.pixels.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.size[::-1]


def to_float(pixels: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from uint8 pixels (x · float32(1/255), as everywhere in the toolkit); float input as is."""
    if pixels.dtype == np.uint8:
        return np.multiply(pixels, np.float32(1 / 255), dtype=np.float32)
    return pixels


def max_pixels_default() -> int:
    """The pixel limit: ``BARGAINNET_MAX_PIXELS`` from the environment, else 100 megapixels."""
    value = os.environ.get("BARGAINNET_MAX_PIXELS")
    if value:
        try:
            return int(value)
        except ValueError:
            raise InputError(f"BARGAINNET_MAX_PIXELS must be an integer, got {value!r}") from None
    return DEFAULT_MAX_PIXELS


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return "<PIL image>"
    return "<array>"


def _check_pixels(width: int, height: int, name: str, max_pixels: int | None) -> None:
    limit = max_pixels_default() if max_pixels is None else int(max_pixels)
    if width * height > limit:
        raise InputError(
            f"{name}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limit:,} pixels (decompression-bomb guard); raise it with --max-pixels or "
            "BARGAINNET_MAX_PIXELS if the file is trusted"
        )


@contextlib.contextmanager
def _our_pixel_limit():
    """Pillow's own decompression-bomb limit off: :func:`_check_pixels` (configurable) replaces it,
    checked from the header before any decoding."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def open_image(
    path: str | os.PathLike, *, max_pixels: int | None = None, draft_long_side: int | None = None
) -> Image.Image:
    """Open and fully decode an image file with EXIF orientation applied.

    ``draft_long_side``: for a JPEG whose long side exceeds twice this, let the decoder scale it
    down in the DCT domain (Pillow's ``Image.draft``, mode RGB) to a size whose long side is
    still at least this (much faster); the caller finishes the resize. Other files are decoded
    at full size.

    Raises :class:`InputError` for a missing path, a folder, an unreadable or truncated file, or
    an image over the pixel limit (checked from the header, before decoding).
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    if path.is_dir():
        raise InputError(f"{name}: is a folder, expected an image file")
    try:
        with _our_pixel_limit():
            image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise InputError(f"{name}: {err} (decompression-bomb guard)") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image (unknown or corrupt format)") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as err:
        raise InputError(f"{name}: cannot read image: {err}") from None
    try:
        _check_pixels(image.width, image.height, name, max_pixels)
        try:
            if draft_long_side and image.format == "JPEG" and max(image.size) > 2 * draft_long_side:
                s = draft_long_side / max(image.size)
                image.draft("RGB", (round(image.width * s), round(image.height * s)))
            with _our_pixel_limit():
                image.load()
                upright = image.getexif().get(ExifTags.Base.Orientation, 1) in (1, None)
                transposed = image if upright else ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError) as err:
            # Pillow reports truncation as OSError("image file is truncated ...").
            raise InputError(f"{name}: truncated or corrupt image ({err})") from None
        if transposed is image and getattr(image, "fp", None) is not None:
            transposed = image.copy()  # a file Pillow keeps open (several frames): a copy, then close it
    except BaseException:
        image.close()
        raise
    if transposed is not image:
        image.close()
    return transposed


def _pil_to_data(image: Image.Image, name: str, path: Path | None) -> ImageData:
    mode = image.mode
    alpha = None
    has_transparency = "transparency" in image.info
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and has_transparency):
        rgba = image.convert("RGBA")
        arr = np.asarray(rgba)
        rgb8 = np.ascontiguousarray(arr[..., :3])
        alpha = arr[..., 3].astype(np.float32) / 255.0
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = np.asarray(image).astype(np.float64)
        gray = np.clip(gray / 65535.0, 0.0, 1.0).astype(np.float32)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        return ImageData(rgb=rgb, alpha=None, rgb8=None, name=name, path=path)
    elif mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        return ImageData(rgb=rgb, alpha=None, rgb8=None, name=name, path=path)
    else:
        pil = image if image.mode == "RGB" else image.convert("RGB")
        return ImageData(rgb=None, alpha=None, rgb8=None, name=name, path=path, pil=pil)
    return ImageData(rgb=None, alpha=alpha, rgb8=rgb8, name=name, path=path)


def _array_to_data(array: np.ndarray, name: str) -> ImageData:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(
            f"{name}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {tuple(np.shape(array))}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: empty image of shape {tuple(arr.shape)}")
    rgb8 = None
    if arr.dtype == np.uint8:
        scaled = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        scaled = (arr.astype(np.float64) / 65535.0).astype(np.float32)
    elif arr.dtype == np.bool_:
        scaled = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        scaled = arr.astype(np.float32)
        if not np.all(np.isfinite(scaled)):
            raise InputError(f"{name}: array contains NaN or infinite values")
        lo, hi = float(scaled.min()), float(scaled.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise InputError(
                f"{name}: float array values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]"
            )
        scaled = np.clip(scaled, 0.0, 1.0)
    else:
        raise InputError(f"{name}: unsupported array dtype {arr.dtype} (use uint8, uint16 or float in [0, 1])")
    channels = arr.shape[2]
    alpha = scaled[..., 3].copy() if channels == 4 else None
    rgb = scaled[..., :3] if channels >= 3 else np.repeat(scaled, 3, axis=2)
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    if arr.dtype == np.uint8:
        rgb8 = np.ascontiguousarray(arr[..., :3] if channels >= 3 else np.repeat(arr, 3, axis=2))
    return ImageData(rgb=rgb, alpha=alpha, rgb8=rgb8, name=name)


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> ImageData:
    """Load a composite, background or cut-out into an :class:`ImageData`.

    Args:
        source: a path, a ``PIL.Image.Image`` or a numpy array (see the module docstring).
        max_pixels: pixel limit (default :func:`max_pixels_default`).

    Returns:
        ImageData with ``rgb`` float32 (H, W, 3) in [0, 1] and ``alpha`` (H, W) or None.
    """
    if isinstance(source, ImageData):
        return source
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        image = open_image(source, max_pixels=max_pixels)
        return _pil_to_data(image, name, Path(source).resolve())
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, name, max_pixels)
        try:
            image = ImageOps.exif_transpose(source)
        except Exception as err:  # noqa: BLE001 - a malformed EXIF block in a user image
            raise InputError(f"{name}: cannot apply EXIF orientation ({err})") from None
        return _pil_to_data(image, name, None)
    if isinstance(source, np.ndarray):
        if source.ndim >= 2:
            _check_pixels(source.shape[1], source.shape[0], name, max_pixels)
        return _array_to_data(source, name)
    raise InputError(
        f"unsupported image type {type(source).__name__}: pass a path, a PIL image or a numpy array"
    )


#: An alpha channel is the mask only when it marks a region: at least this fraction of the pixels
#: (and at least one) is clearly transparent (<= 10 %) and as many are opaque (>= 50 %).
ALPHA_REGION_FRACTION = 1e-4
#: A "mask" is refused as a photo when at least this fraction of its pixels lies strictly
#: between 10 % and 90 % gray and at least PHOTO_COLOUR_FRACTION of them are tinted (max - min
#: channel > 4 % of full scale). On 500 photos of the Lalonde-Efros set 498 are refused, while
#: their masks, saved as JPEG at quality 75, all pass.
PHOTO_INTERMEDIATE_FRACTION = 0.5
PHOTO_COLOUR_FRACTION = 0.1
_TINT = 0.04
_CLEAR = 0.1  # "clearly" transparent/black is <= 10 %, clearly opaque/white >= 90 %


def alpha_marks_region(alpha: np.ndarray) -> bool:
    """Whether an alpha channel (H, W) in [0, 1] is a mask: it has clearly transparent (<= 10 %)
    and opaque (>= 50 %) parts. A near-constant alpha (e.g. 253..255, or 217..255 as in some published
    composite sets, where the real mask is in the colour channels) is not."""
    need = max(1, int(ALPHA_REGION_FRACTION * alpha.size))
    return int(np.count_nonzero(alpha <= _CLEAR)) >= need and int(np.count_nonzero(alpha >= MASK_THRESHOLD)) >= need


def _check_not_photo(gray: np.ndarray, rgb: np.ndarray | None, name: str) -> None:
    """Refuse a colourful image of mostly intermediate levels: a photo given as the mask (often
    the composite and the mask swapped). JPEG masks pass: their compression noise stays near
    black and white."""
    if rgb is None:  # a gray image cannot be a colourful photo
        return
    intermediate = float(np.mean((gray > _CLEAR) & (gray < 1 - _CLEAR)))
    if intermediate < PHOTO_INTERMEDIATE_FRACTION:
        return
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    coloured = float(np.mean(chroma > _TINT))
    if coloured >= PHOTO_COLOUR_FRACTION:
        raise InputError(
            f"{name}: this looks like a photo, not a mask ({intermediate:.0%} of its pixels are neither "
            f"black nor white, {coloured:.0%} are coloured); a mask is white (foreground) on black. "
            "Check the argument order: the composite comes first, then its mask"
        )


def _choose_mask(gray: np.ndarray, alpha: np.ndarray | None, rgb: np.ndarray | None, name: str) -> np.ndarray:
    """The rules of :func:`load_mask`: alpha when it marks a region, else the gray level (after
    the photo check)."""
    if alpha is not None and alpha_marks_region(alpha):
        return alpha
    _check_not_photo(gray, rgb, name)
    return gray


def _mask_gray(source: ImageSource, max_pixels: int | None) -> tuple[np.ndarray, str]:
    """The mask's level, float32 (H, W) in [0, 1], or uint8 (H, W) for a gray 8-bit image without
    alpha (its level is :func:`to_float` of it), chosen by the rules of :func:`load_mask`."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        image = open_image(source, max_pixels=max_pixels)
    elif isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, name, max_pixels)
        image = ImageOps.exif_transpose(source)
    elif isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            data = _array_to_data(arr, name)
            # ITU-R 601 luma, as Pillow's convert("L").
            gray = (data.rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
            return _choose_mask(gray, data.alpha, data.rgb, name), name
        if arr.ndim != 2:
            raise InputError(f"{name}: expected a mask of shape (H, W), got {tuple(np.shape(source))}")
        return _array_to_data(arr, name).rgb[..., 0].copy(), name
    else:
        raise InputError(
            f"unsupported mask type {type(source).__name__}: pass a path, a PIL image or a numpy array"
        )
    alpha = None
    if "A" in image.mode or "transparency" in image.info:
        alpha8 = np.asarray(image.convert("RGBA"))[..., 3]
        alpha = to_float(alpha8)
        if alpha_marks_region(alpha):
            return alpha, name
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _pil_to_data(image, name, None).rgb[..., 0].copy(), name
    # Colour masks: Pillow's ITU-R 601 luma; "1", "L", "P", "LA", ... through the same conversion.
    gray8 = np.asarray(image if image.mode == "L" else image.convert("L"))
    if image.mode in ("1", "L", "LA", "La"):
        return gray8, name
    rgb = to_float(np.asarray(image.convert("RGB")))
    return _choose_mask(to_float(gray8), None, rgb, name), name


def load_mask(
    source: ImageSource,
    *,
    size: tuple[int, int] | None = None,
    resize: bool = False,
    threshold: float = MASK_THRESHOLD,
    max_pixels: int | None = None,
    check_coverage: bool = True,
) -> np.ndarray:
    """Load a foreground mask and binarise it.

    Args:
        source: path, PIL image or numpy array (bool, uint8, uint16 or float in [0, 1]).
        size: (width, height) the mask must have (the composite's), or None.
        resize: when the size differs, resize (bilinear on the gray level, then threshold)
            instead of raising.
        threshold: foreground where value >= threshold, value scaled to [0, 1] (default 0.5,
            i.e. >= 128 for 8-bit masks).
        check_coverage: raise when the mask is empty or covers the whole image.

    Returns:
        bool array (H, W), True = foreground.
    """
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"mask threshold must be in (0, 1], got {threshold}")
    gray, name = _mask_gray(source, max_pixels)
    if size is not None and (gray.shape[1], gray.shape[0]) != tuple(size):
        mw, mh = gray.shape[1], gray.shape[0]
        if not resize:
            raise InputError(
                f"{name}: mask is {mw}x{mh} but the composite is {size[0]}x{size[1]} (width x height); "
                "pass --resize-mask (resize_mask=True) to resize it"
            )
        gray = np.asarray(
            Image.fromarray(np.ascontiguousarray(to_float(gray), dtype=np.float32)).resize(tuple(size), Image.BILINEAR)
        )
    if gray.dtype == np.uint8:  # the same comparison as on to_float(gray), as one on the 8-bit levels
        first = int(np.argmax(to_float(np.arange(256, dtype=np.uint8)) >= threshold))  # 255 always passes
        mask = gray >= first
    else:
        mask = gray >= threshold
    if check_coverage:
        check_mask_coverage(mask, name)
    return mask


def check_mask_coverage(mask: np.ndarray, name: str) -> None:
    """Raise :class:`InputError` when a binary mask has no foreground or no background pixel."""
    if not mask.any():
        raise InputError(
            f"{name}: mask is empty (no pixel >= {MASK_THRESHOLD:g} of full scale, i.e. >= 128 in 8 bits); "
            "nothing to harmonize"
        )
    if mask.all():
        raise InputError(
            f"{name}: mask covers the whole image; BargainNet needs background pixels to guide the foreground"
        )


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float [0, 1] (H, W, C) -> uint8 by rounding (values clipped first)."""
    tmp = np.clip(rgb, 0.0, 1.0, dtype=np.float32)
    tmp *= 255.0
    np.rint(tmp, out=tmp)
    return tmp.astype(np.uint8)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_path(path: str | os.PathLike, inputs: Iterable = (), *, alpha: bool = False) -> Path:
    """Validate an output path before any work: known extension, not an input, alpha-capable.

    Raises :class:`OutputError`.
    """
    out = Path(path)
    ext = out.suffix.lower()
    if ext not in _FORMAT_BY_EXT:
        raise OutputError(
            f"{out}: unknown output extension {out.suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    if alpha and ext not in _ALPHA_FORMATS:
        raise OutputError(f"{out}: the input has an alpha channel, which {out.suffix} cannot keep; use .png")
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name")
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and _same_file(out, Path(item)):
            raise OutputError(f"{out}: output path is the same file as input {item}; refusing to overwrite an input")
    return out


def make_folder(
    folder: str | os.PathLike, what: str = "output folder", *, hint: str = "", writable: bool = False
) -> Path:
    """Create ``folder`` (with its parents) when missing; with ``writable``, also check that files
    can be created in it. ``what`` names it and ``hint`` ends the messages.

    Raises :class:`OutputError` ("cannot create <what> <folder>: <reason><hint>", or "<what>
    <folder> is not writable<hint>").
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {what} {folder}: {err.strerror or err}{hint}") from None
    if writable and not os.access(folder, os.W_OK):
        raise OutputError(f"{what} {folder} is not writable{hint}")
    return folder


def atomic_write(
    path: str | os.PathLike, write, *, suffix: str | None = None, fsync: bool = False
) -> Path:
    """Call ``write(tmp_path)`` then move the file into place with ``os.replace``.

    The temporary file lies in the destination folder (so the move is atomic), is named
    ``.<name>.<random><suffix>`` (``suffix`` defaults to the destination's, so that writers that
    pick the format from the extension see the right one) and is removed when anything fails.
    ``fsync=True`` flushes it to disk before the move (a crash right after never leaves an empty
    file under the final name). The parent folder is created when missing. Raises
    :class:`OutputError` when the folder cannot be created or written; other exceptions of
    ``write`` propagate unchanged.
    """
    out = Path(path)
    try:
        parent = make_folder(out.parent, writable=True)
    except OutputError as err:
        raise OutputError(f"{out}: {err}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix or out.suffix, dir=parent)
    except OSError as err:
        raise OutputError(f"{out}: cannot write in {parent}: {err.strerror or err}") from None
    os.close(fd)
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as err:
        raise OutputError(f"{out}: cannot write: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), suffix=".tmp", fsync=fsync)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), suffix=".tmp", fsync=fsync)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy the file ``src`` to ``dst`` atomically (:func:`atomic_write`); ``src`` is not checked
    against ``dst``."""
    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp), suffix=".tmp")


def atomic_save_pil(image: Image.Image, path: str | os.PathLike, **params) -> Path:
    """``image.save(path, **params)`` atomically (:func:`atomic_write`); without ``format`` in
    ``params`` Pillow picks it from the extension of ``path``."""
    return atomic_write(path, lambda tmp: image.save(tmp, **params))


def save_image(
    path: str | os.PathLike,
    rgb: np.ndarray | Image.Image,
    alpha: np.ndarray | None = None,
    *,
    inputs: Iterable = (),
    quality: int = 95,
) -> Path:
    """Write an image atomically; refuse to overwrite any path in ``inputs``.

    Args:
        path: destination; the format follows the extension (.png .jpg .jpeg .tif .tiff .webp .bmp).
        rgb: uint8 (H, W, 3), or float (H, W, 3) in [0, 1] (rounded to 8 bits), or an RGB Pillow image.
        alpha: None, or (H, W) uint8 / float in [0, 1]; written as the alpha channel.
        inputs: paths that must not be overwritten.
        quality: JPEG/WebP quality.
    """
    out = check_output_path(path, inputs, alpha=alpha is not None)
    if isinstance(rgb, Image.Image) and rgb.mode != "RGB":
        raise ValueError(f"save_image takes an RGB Pillow image, got mode {rgb.mode}")
    if isinstance(rgb, Image.Image) and alpha is None:
        image = rgb
    else:
        rgb = np.asarray(rgb)
        rgb8 = rgb if rgb.dtype == np.uint8 else to_uint8(rgb)
        if alpha is not None:
            a8 = alpha if alpha.dtype == np.uint8 else to_uint8(alpha)
            rgb8 = np.dstack([rgb8, a8])
        image = Image.fromarray(np.ascontiguousarray(rgb8))
    fmt = _FORMAT_BY_EXT[out.suffix.lower()]
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP" and quality >= 100:
        options = {"lossless": True}
    return atomic_save_pil(image, out, format=fmt, **options)


# --------------------------------------------------------------------------------------------
# folders of composites and masks


@dataclass(frozen=True)
class ImagePair:
    """A composite found in a folder and its mask (None when none was found: ``missing`` says where
    it was looked for)."""

    composite: Path
    mask: Path | None
    missing: str = ""

    def __iter__(self):  # unpacks as (composite, mask)
        return iter((self.composite, self.mask))


def find_image(places) -> Path | None:
    """The first existing ``<folder>/<stem><ext>`` over ``places`` ((folder, stem) pairs, in
    order), trying .png first, then the other image extensions, each in lower then upper case."""
    exts = (".png",) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png")
    for folder, stem in places:
        for ext in exts:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def list_images(folder: Path, *, skip_masks: bool = False) -> list[Path]:
    """The image files of ``folder`` (by extension; hidden files and, with ``skip_masks``, names
    ending in ``_mask`` left out), sorted; :class:`InputError` when there is none."""
    images = sorted(
        p for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not (skip_masks and p.stem.endswith("_mask")) and not p.name.startswith(".")
    )
    if not images:
        raise InputError(f"{folder}: no images found ({' '.join(IMAGE_EXTENSIONS)})")
    return images


def pair_folder(input_dir: str | os.PathLike) -> list[ImagePair]:
    """The composites of one folder with their masks, sorted by name.

    Every image whose name does not end in ``_mask`` is a composite; its mask is
    ``<stem>_mask.<ext>`` beside it, or else ``masks/<stem>.<ext>`` (PNG preferred).
    """
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise InputError(f"{input_dir}: no such folder")
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: not a folder")
    pairs = []
    for p in list_images(input_dir, skip_masks=True):
        mask = find_image(((p.parent, p.stem + "_mask"), (p.parent / "masks", p.stem)))
        pairs.append(ImagePair(p, mask, f"(looked for {p.stem}_mask.png and masks/{p.stem}.png)"))
    return pairs


def pair_folders(composite_dir: str | os.PathLike, mask_dir: str | os.PathLike | None) -> list[ImagePair]:
    """Composites of ``composite_dir`` matched by name with masks of ``mask_dir``: the same stem,
    or for iHarmony4 names ``<real>_<maskid>_<k>`` the mask ``<real>_<maskid>``. Without
    ``mask_dir``: :func:`pair_folder`."""
    if mask_dir is None:
        return pair_folder(composite_dir)
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise InputError(f"{mask_dir}: the composite argument is a folder, so the mask argument must be a folder of masks")
    pairs = []
    for p in list_images(Path(composite_dir)):
        stems = [p.stem]
        parts = p.stem.rsplit("_", 2)
        if len(parts) == 3 and all(parts):
            stems.append(f"{parts[0]}_{parts[1]}")
        pairs.append(ImagePair(p, find_image((mask_dir, stem) for stem in stems), f"in {mask_dir}"))
    return pairs

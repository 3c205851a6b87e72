"""ONNX export of the inference graph, and an onnxruntime runner with the PyTorch runner's API.

The exported graph takes ``composite`` (B, 3, S, S) in [-1, 1] and ``mask`` (B, 1, S, S) in {0, 1}
(batch and size dynamic; S, the working size it was exported for, is recorded and used for images;
other sizes serve ``strength="auto"``'s smaller calibration patches) and returns:

* ``harmonized`` (B, 3, S, S): Î·M + Ĩ·(1−M), the foreground translated to the background's code;
* ``inharmony_before`` (B,): d(z_b, z̃_f), the composite's inharmony level (paper §4.6);
* ``inharmony_after`` (B,): d(z_b, ẑ_f), the same for the harmonized image.

The graph is the model's own :meth:`harmonize_with_inharmony` (any registered family), which
skips the value-dependent input checks of ``forward`` (they cannot be traced). The model's
family, configuration and the working size are stored in the ONNX metadata
(``bargainnet_architecture``, ``bargainnet_config``, ``bargainnet_size``); :class:`OnnxRunner`
gives them back as the family's typed configuration.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError, OutputError
from ..io import atomic_write
from ..models.base import check_size
from ..models.convert import parse_inference_settings
from ..models.registry import architecture_of, build_config

INPUT_NAMES = ("composite", "mask")
OUTPUT_NAMES = ("harmonized", "inharmony_before", "inharmony_after")
DEFAULT_OPSET = 17


class InferenceGraph(nn.Module):
    """The exported graph: ``model.harmonize_with_inharmony`` as a module; shapes as in the module docstring."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, composite: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.harmonize_with_inharmony(composite, mask)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    size: int | None = None,
    opset: int = DEFAULT_OPSET,
    inputs: tuple = (),
) -> Path:
    """Export ``model`` (a :class:`BargainNet`) to ONNX with dynamic batch and spatial dimensions
    (images run at ``size``, recorded in the metadata; other sizes serve the calibration).

    Args:
        model: the BargainNet (put in eval mode here).
        path: destination ``.onnx`` (written atomically; never one of ``inputs``).
        size: working size S (default: the config's default working size, 256 for the paper's model).
        opset: ONNX opset.

    Returns:
        The path written.
    """
    from ..errors import require_extra

    require_extra("onnx", "onnx", purpose="ONNX export")
    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise OutputError(f"{out}: the ONNX file name must end in .onnx")
    for item in inputs:
        if item is not None and Path(item).resolve() == out.resolve():
            raise OutputError(f"{out}: output path is the same file as input {item}; refusing to overwrite an input")
    config = model.config
    size = check_size(config, size, what="size")
    architecture = architecture_of(model)
    graph = InferenceGraph(model.eval().cpu()).eval()
    example = (torch.zeros(2, 3, size, size), torch.ones(2, 1, size, size))
    example[1][:, :, : size // 2] = 0

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            kwargs = dict(
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamic_axes={**{name: {0: "batch"} for name in OUTPUT_NAMES},
                              **{name: {0: "batch", 2: "height", 3: "width"} for name in INPUT_NAMES + OUTPUT_NAMES[:1]}},
            )
            try:
                # The TorchScript-based exporter keeps the batch dynamic; the dynamo exporter
                # (torch 2.13) specialises it to the example's batch for this graph.
                torch.onnx.export(graph, example, tmp, dynamo=False, **kwargs)
            except TypeError:  # a torch without the `dynamo` switch
                torch.onnx.export(graph, example, tmp, **kwargs)
        import onnx

        proto = onnx.load(tmp)
        metadata = (
            ("bargainnet_architecture", architecture),
            ("bargainnet_config", json.dumps(config.to_dict())),
            ("bargainnet_size", str(size)),
            ("bargainnet_inference", json.dumps(getattr(model, "inference_settings", None) or {}, sort_keys=True)),
        )
        head = getattr(model, "strength_head", None)
        if head is not None:  # run by the runner in PyTorch: it is tiny and reads features made outside the graph
            metadata += (("bargainnet_strength_head", json.dumps(head.config.to_dict())),
                         ("bargainnet_strength_head_tensors", head.tensors_text()))
        for key, value in metadata:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)

    return atomic_write(out, write)


class OnnxRunner:
    """Runs an exported graph with onnxruntime (CPU by default).

    ``config`` is the model family's configuration (typed, as ``model.config``) and ``size`` the
    working size it was exported at; ``inference_settings`` what the weights file recommended
    (copied into the graph's metadata at export); ``strength_head`` the weights file's learned
    strength head (:mod:`bargainnet.models.strength_head`; kept in the metadata, run with PyTorch)
    or None. ``run(composite, mask)`` takes float32 numpy or torch tensors (B, 3, S, S) in [-1, 1]
    and (B, 1, S, S) and returns torch tensors (harmonized, inharmony_before, inharmony_after).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, providers: list[str] | None = None, threads: int | None = None):
        from ..errors import require_extra

        require_extra("onnx", "onnxruntime", purpose="running an ONNX model")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise InputError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise InputError(f"cannot load ONNX model {path}: {err}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        names = [i.name for i in self.session.get_inputs()]
        if names != list(INPUT_NAMES) or "bargainnet_size" not in meta:
            raise InputError(f"{path}: not an ONNX model exported by 'bargainnet export-onnx'")
        self.size = int(meta["bargainnet_size"])
        try:
            # files exported before the architecture field hold the paper's model
            self.config = build_config(meta.get("bargainnet_architecture"), json.loads(meta.get("bargainnet_config", "{}")))
        except (ValueError, TypeError) as err:
            raise InputError(f"{path}: invalid model configuration in its metadata: {err}") from None
        self.inference_settings = parse_inference_settings(meta.get("bargainnet_inference"), str(path))
        self.strength_head = None
        if "bargainnet_strength_head" in meta:
            from ..models.strength_head import StrengthHead

            head = StrengthHead.from_metadata(meta["bargainnet_strength_head"], self.config.code_dim, path)
            self.strength_head = head.load_tensors_text(meta.get("bargainnet_strength_head_tensors", ""), path)
        self.path = path

    def run(self, composite, mask) -> tuple[Tensor, Tensor, Tensor]:
        feeds = {
            "composite": np.ascontiguousarray(_numpy(composite), dtype=np.float32),
            "mask": np.ascontiguousarray(_numpy(mask), dtype=np.float32),
        }
        return tuple(torch.from_numpy(x) for x in self.session.run(list(OUTPUT_NAMES), feeds))


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def compare_with_torch(model: nn.Module, onnx_path: str | os.PathLike, *, batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between onnxruntime and PyTorch outputs on random composites/masks."""
    runner = OnnxRunner(onnx_path)
    gen = torch.Generator().manual_seed(seed)
    s = runner.size
    composite = torch.rand(batch, 3, s, s, generator=gen) * 2 - 1
    mask = torch.zeros(batch, 1, s, s)
    for i in range(batch):
        y, x = torch.randint(0, s // 2, (2,), generator=gen).tolist()
        mask[i, :, y : y + s // 2, x : x + s // 2] = 1
    with torch.no_grad():
        expected = InferenceGraph(model.eval().cpu())(composite, mask)
    got = runner.run(composite, mask)
    return max(float((a - b).abs().max()) for a, b in zip(got, expected))

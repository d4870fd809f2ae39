"""MobileNetV2 (depth multiplier 0.5, output stride 8) and DeepLab-v3's head, in torch, with the
weights of the DeepLab-v3 file that ships in the package (models/weights/deeplabv3_mnv2, Apache-2.0;
trained through ImageNet, COCO and PASCAL VOC, person being one of its 21 classes).

The ONNX graph is plain: every Conv node carries its strides, dilations and groups, BatchNorm is
folded into the convolutions' weights and biases, and ReLU6 is a Clip. `onnx.numpy_helper` reads
its initializers; the modules below hold the same convolutions in the graph's order, so that the
weights load by position (`load_deeplab_weights`), each shape checked.

    MOBILENET_BLOCKS                       (expand, out channels, stride, dilation) of the 17 blocks
    InvertedResidual                       [1x1 expand, ReLU6] -> 3x3 depthwise, ReLU6 -> 1x1 project (+ x)
    MobileNetV2Encoder(blocks)             (B,3,H,W) in [-1, 1] -> every block's output (H/2 .. H/8)
    DeepLabHead                            ASPP-lite: 1x1 branch + image pooling -> projection -> logits
    DeepLabV3                              encoder + head: (B,3,H,W) -> (B,21,H/8,W/8) logits
    load_deeplab_weights(module, path)     the file's Conv weights into `module`'s convolutions, in order
    deeplab_v3(path) -> DeepLabV3          the whole pretrained network (eval mode)

Input: RGB scaled to [-1, 1] (x / 127.5 - 1), NCHW; the file itself takes NHWC at 257x257 and
transposes. tests/models/network/test_mobilenet.py checks every block's output and the logits against
onnxruntime's on the same input (1e-4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

# (expand ratio, out channels, stride, dilation) of expanded_conv, expanded_conv_1 ... _16: the
# depth-0.5 MobileNetV2 of the file at output stride 8: block 6's stride 2 became 1, and the blocks
# after it are dilated instead (7-13 by 2, 14-16 by 4), as the file's Conv attributes say.
MOBILENET_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 8, 1, 1),
    (6, 12, 2, 1), (6, 12, 1, 1),
    (6, 16, 2, 1), (6, 16, 1, 1), (6, 16, 1, 1),
    (6, 32, 1, 1), (6, 32, 1, 2), (6, 32, 1, 2), (6, 32, 1, 2),
    (6, 48, 1, 2), (6, 48, 1, 2), (6, 48, 1, 2),
    (6, 80, 1, 2), (6, 80, 1, 4), (6, 80, 1, 4),
    (6, 160, 1, 4),
)  # fmt: skip
STEM_CHANNELS = 16
ASPP_CHANNELS = 256
DEEPLAB_CLASSES = 21
DEEPLAB_PERSON_CLASS = 15  # PASCAL VOC's index of "person"


class ConvReLU6(nn.Sequential):
    """conv (k, stride, dilation, groups, bias) -> ReLU6. (B,in,H,W) -> (B,out,H/stride,W/stride)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        padding = dilation * (kernel // 2)
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, groups, bias=True), nn.ReLU6(inplace=True)
        )


class InvertedResidual(nn.Module):
    """MobileNetV2's block: [1x1 expand, ReLU6] -> 3x3 depthwise (stride, dilation), ReLU6 ->
    1x1 linear projection, plus the input when the shapes allow. (B,in,H,W) -> (B,out,H/s,W/s)."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, stride: int, dilation: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = [ConvReLU6(in_ch, hidden, 1)] if expand != 1 else []
        layers.append(ConvReLU6(hidden, hidden, 3, stride, dilation, groups=hidden))
        layers.append(nn.Conv2d(hidden, out_ch, 1, bias=True))
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class MobileNetV2Encoder(nn.Module):
    """The stem (3x3, stride 2, ReLU6) and the inverted residual blocks of `blocks`.

    forward: (B,3,H,W) in [-1, 1] -> the output of every block, a list of 17 tensors; `scales`
    names the last block at each resolution: block 0 (8 ch, H/2), 2 (12, H/4), 16 (160, H/8;
    from block 3 on, every block is at H/8).
    """

    scales: tuple[int, ...] = (0, 2, 16)

    def __init__(self, blocks: tuple[tuple[int, int, int, int], ...] = MOBILENET_BLOCKS) -> None:
        super().__init__()
        self.stem = ConvReLU6(3, STEM_CHANNELS, 3, stride=2)
        layers, in_ch = [], STEM_CHANNELS
        for expand, out_ch, stride, dilation in blocks:
            layers.append(InvertedResidual(in_ch, out_ch, expand, stride, dilation))
            in_ch = out_ch
        self.blocks = nn.ModuleList(layers)
        self.channels = tuple(b[1] for b in blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


class DeepLabHead(nn.Module):
    """DeepLab-v3's head of the file: a 1x1 branch and an image-pooling branch (each 256 ch, ReLU),
    concatenated (pooling first) -> 1x1 projection, ReLU -> 1x1 logits. (B,160,h,w) -> (B,21,h,w)."""

    def __init__(self, in_ch: int = 160, channels: int = ASPP_CHANNELS, classes: int = DEEPLAB_CLASSES) -> None:
        super().__init__()
        self.branch = nn.Conv2d(in_ch, channels, 1)
        self.pooling = nn.Conv2d(in_ch, channels, 1)
        self.projection = nn.Conv2d(2 * channels, channels, 1)
        self.logits = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.pooling(x.mean(dim=(2, 3), keepdim=True))).expand(-1, -1, *x.shape[2:])
        branch = torch.relu(self.branch(x))
        return self.logits(torch.relu(self.projection(torch.cat([pooled, branch], dim=1))))


class DeepLabV3(nn.Module):
    """MobileNetV2Encoder + DeepLabHead: (B,3,H,W) in [-1, 1] -> (B,21,H/8,W/8) VOC class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = MobileNetV2Encoder()
        self.head = DeepLabHead(self.encoder.channels[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1])


def deeplab_conv_weights(path: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(node name, weight (out, in/groups, k, k), bias (out,)) of every Conv node of the file, in order."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {i.name: i for i in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        weight, bias = (numpy_helper.to_array(initializers[name]) for name in node.input[1:3])
        out.append((node.name, weight, bias))
    return out


def load_deeplab_weights(module: nn.Module, path: str | Path) -> None:
    """Copy the file's Conv weights, in graph order, into `module`'s nn.Conv2d layers, in module
    order: a MobileNetV2Encoder takes the first 51 (stem and blocks), a DeepLabV3 all 55.

    The head's order in the file is the 1x1 branch, then image pooling, projection, logits: as
    DeepLabHead declares them. Raises ValueError when a shape differs.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    weights = deeplab_conv_weights(path)
    if len(convs) > len(weights):
        raise ValueError(f"{type(module).__name__} has {len(convs)} convolutions, the file {len(weights)}")
    with torch.no_grad():
        for conv, (name, weight, bias) in zip(convs, weights, strict=False):
            if tuple(conv.weight.shape) != weight.shape or conv.bias is None or tuple(conv.bias.shape) != bias.shape:
                raise ValueError(f"{name}: the file's weight {weight.shape} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(weight)))  # a writable copy of the initializer
            conv.bias.copy_(torch.from_numpy(np.array(bias)))


def deeplab_v3(path: str | Path) -> DeepLabV3:
    """The whole pretrained DeepLab-v3 of the file, in eval mode."""
    net = DeepLabV3()
    load_deeplab_weights(net, path)
    return net.eval()

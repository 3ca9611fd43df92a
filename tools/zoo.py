"""Reference CNNs as ONNX models, built with onnx.helper and seeded numpy weights (no torch).

The tests and `imcc bench` need ResNet-18 and MobileNetV2 on a machine without torch, so the
graphs are written out here node for node as torch's exporter writes them for the modules in
`examples/export_cnns.py` (opset 17; ReLU6 as Clip with constant bounds, the classifier as
Flatten + Gemm), except that BatchNormalization stays a node of its own, where torch's
eval-mode export folds it into the Conv: so imcc's own folding is exercised. A test checks
both have the same nodes (BatchNorm aside) and weight shapes when torch is present. MODELS
holds those two, which the suites and the bench simulate at 224; LARGE_MODELS holds VGG-16 and
ResNet-50, too large for that, built the same way.

    resnet18(size=32)       He et al. 2016: 7x7/2 stem, 3x3/2 max pool, 4 stages x 2 BasicBlocks
    mobilenetv2(size=32)    Sandler et al. 2018, width 1.0, Table 2's (t, c, n, s) settings
    vgg16(size=224)         Simonyan & Zisserman 2015, configuration D, no BatchNorm
    resnet50(size=224)      He et al. 2016, Bottleneck blocks, torchvision's "v1.5" strides

`size` is the input side (224 for ImageNet; 32 keeps every layer and channel while making an
inference cheap to simulate). Weights use He initialisation, so activations keep their scale
through the depth; BatchNorm statistics are random but well conditioned. The two large models
take their paper's 224 by default; their parameters match the published counts (VGG-16
138,357,544, ResNet-50 25,557,032 at 1000 classes), and a test compares them with torchvision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

# (expansion t, channels c, repeats n, first stride s): Sandler et al. 2018, Table 2
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
# (channels, convolutions) per stage: Simonyan & Zisserman 2015, Table 1, configuration D
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# (width, blocks, first stride): He et al. 2016, Table 1, 50-layer column
RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
BOTTLENECK_EXPANSION = 4
# The BatchNorm statistics are random, so they do not renormalise: with full-size scales each
# Bottleneck's branch would add at least as much as its input carries, and the 16 residual
# sums grow the activations ~1.7x per block (logits ~1e4 at the end). A branch whose last
# BatchNorm scales are 5x smaller keeps them O(1) (logits' std ~3 for a unit normal image).
RESIDUAL_GAIN = 0.2


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, kind: str, value: np.ndarray) -> str:
        name = self.name(kind)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(
        self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1,
        bias: bool = False, gain: float = 1.0,
    ) -> str:  # fmt: skip
        """A k x k convolution (padded to keep the map at stride 1) followed by BatchNorm whose
        scales are multiplied by `gain`, or, with `bias`, carrying a bias of its own and no
        BatchNorm (torch's Conv2d(bias=True))."""
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        inputs = [x, self.const("w", w)]
        if bias:
            inputs.append(self.const("b", self.rng.uniform(-0.1, 0.1, cout)))
        pad = k // 2
        y = self.node(
            "Conv", inputs, kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, group=group, dilations=[1, 1],
        )  # fmt: skip
        return y if bias else self.batch_norm(y, cout, gain)

    def batch_norm(self, x: str, c: int, gain: float = 1.0) -> str:
        rng = self.rng
        params = [
            rng.uniform(0.5, 1.5, c) * gain,  # scale
            rng.uniform(-0.2, 0.2, c),  # bias
            rng.uniform(-0.2, 0.2, c),  # running mean
            rng.uniform(0.5, 1.5, c),  # running variance
        ]
        names = [self.const("bn", p) for p in params]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-5, momentum=0.9)

    def relu6(self, x: str) -> str:
        low, high = self.const("lo", np.array(0.0)), self.const("hi", np.array(6.0))
        return self.node("Clip", [x, low, high])

    def max_pool(self, x: str, k: int, stride: int, pad: int = 0) -> str:
        return self.node(
            "MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
        )

    def classifier(self, x: str, features: int, classes: int) -> str:
        pooled = self.node("GlobalAveragePool", [x])
        return self.fc(self.node("Flatten", [pooled], axis=1), features, classes)

    def fc(self, x: str, features: int, out: int) -> str:
        """A fully connected layer with torch's default Linear initialisation (uniform in
        +-1/sqrt(features)), as each model's last one."""
        bound = 1 / np.sqrt(features)
        w = self.rng.uniform(-bound, bound, (out, features))
        b = self.rng.uniform(-bound, bound, out)
        return self.gemm(x, w, b)

    def fc_relu(self, x: str, features: int, out: int) -> str:
        """A hidden fully connected layer and its ReLU, He-initialised like the convolutions so
        the scale survives; drawn in float32 and scaled in place, as VGG's first one alone
        holds 103M weights."""
        w = self.rng.standard_normal((out, features), dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / features))
        return self.node("Relu", [self.gemm(x, w, self.rng.uniform(-0.1, 0.1, out))])

    def gemm(self, x: str, w: np.ndarray, b: np.ndarray) -> str:
        inputs = [x, self.const("fc", w), self.const("fc", b)]
        return self.node("Gemm", inputs, alpha=1.0, beta=1.0, transB=1)

    def model(self, name: str, image: str, logits: str, size: int, classes: int) -> onnx.ModelProto:
        self.nodes[-1].output[0] = logits
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(image, TensorProto.FLOAT, ["batch", 3, size, size])],
            [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["batch", classes])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def resnet18(size: int = 32, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("image", 3, 64, 7, 2)])
    x = b.max_pool(x, 3, 2, pad=1)
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for s in (stride, 1):
            y = b.node("Relu", [b.conv(x, cin, cout, 3, s)])
            y = b.conv(y, cout, cout, 3)
            shortcut = b.conv(x, cin, cout, 1, s) if s != 1 or cin != cout else x
            x = b.node("Relu", [b.node("Add", [y, shortcut])])
            cin = cout
    b.classifier(x, 512, classes)
    return b.model("resnet18", "image", "logits", size, classes)


def mobilenetv2(size: int = 32, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.relu6(b.conv("image", 3, 32, 3, 2))
    cin = 32
    for t, c, n, s in MOBILENETV2_SETTINGS:
        for i in range(n):
            stride, hidden = s if i == 0 else 1, cin * t
            y = b.relu6(b.conv(x, cin, hidden, 1)) if t != 1 else x
            y = b.relu6(b.conv(y, hidden, hidden, 3, stride, group=hidden))
            y = b.conv(y, hidden, c, 1)
            x = b.node("Add", [x, y]) if stride == 1 and cin == c else y
            cin = c
    x = b.relu6(b.conv(x, cin, 1280, 1))
    b.classifier(x, 1280, classes)
    return b.model("mobilenetv2", "image", "logits", size, classes)


def vgg16(size: int = 224, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """Configuration D: 13 biased 3x3 convolutions with ReLU, no BatchNorm, a 2x2/2 max pool
    after each stage, then three fully connected layers; dropout is the identity at inference.
    torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier is the identity at 224 and is
    left out, so at other sizes the first layer takes the (size / 32)^2 x 512 map as it is."""
    side = size // 32
    if side < 1:
        raise ValueError(f"vgg16 needs an input side of at least 32 pixels, not {size}")
    b = _Builder(seed)
    x, cin = "image", 3
    for cout, repeats in VGG16_STAGES:
        for _ in range(repeats):
            x = b.node("Relu", [b.conv(x, cin, cout, 3, bias=True)])
            cin = cout
        x = b.max_pool(x, 2, 2)
    x = b.node("Flatten", [x], axis=1)
    x = b.fc_relu(x, side * side * 512, 4096)
    x = b.fc_relu(x, 4096, 4096)
    b.fc(x, 4096, classes)
    return b.model("vgg16", "image", "logits", size, classes)


def resnet50(size: int = 224, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """He et al. 2016's 50-layer network as torchvision builds it, "v1.5": a downsampling
    Bottleneck strides on its 3x3 convolution, where the paper strides on the first 1x1 (the
    same weights; a little more compute and accuracy). Each stage's first block has a
    projection shortcut (1x1 convolution + BatchNorm); the others add their input."""
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("image", 3, 64, 7, 2)])
    x = b.max_pool(x, 3, 2, pad=1)
    cin = 64
    for width, repeats, stride in RESNET50_STAGES:
        for i in range(repeats):
            x = _bottleneck(b, x, cin, width, stride if i == 0 else 1)
            cin = width * BOTTLENECK_EXPANSION
    b.classifier(x, cin, classes)
    return b.model("resnet50", "image", "logits", size, classes)


def _bottleneck(b: _Builder, x: str, cin: int, width: int, stride: int) -> str:
    cout = width * BOTTLENECK_EXPANSION
    y = b.node("Relu", [b.conv(x, cin, width, 1)])
    y = b.node("Relu", [b.conv(y, width, width, 3, stride)])
    y = b.conv(y, width, cout, 1, gain=RESIDUAL_GAIN)
    shortcut = b.conv(x, cin, cout, 1, stride) if stride != 1 or cin != cout else x
    return b.node("Relu", [b.node("Add", [y, shortcut])])


# The default suites and `imcc bench` simulate every model of MODELS at 224; these two are too
# large for that (VGG-16: 15.5 GMAC and 138M weights), so they are kept apart.
MODELS = {"resnet18": resnet18, "mobilenetv2": mobilenetv2}
LARGE_MODELS = {"vgg16": vgg16, "resnet50": resnet50}

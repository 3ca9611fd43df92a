"""Reference CNNs as ONNX models, built with onnx.helper and seeded numpy weights (no torch).

The tests and `imcc bench` need ResNet-18 and MobileNetV2 on a machine without torch, so the
graphs are written out here node for node as torch's exporter writes them for the modules in
`examples/export_cnns.py` (opset 17; ReLU6 as Clip with constant bounds, the classifier as
Flatten + Gemm), except that BatchNormalization stays a node of its own, where torch's
eval-mode export folds it into the Conv: so imcc's own folding is exercised. A test checks
both have the same nodes (BatchNorm aside) and weight shapes when torch is present.

    resnet18(size=32)       He et al. 2016: 7x7/2 stem, 3x3/2 max pool, 4 stages x 2 BasicBlocks
    mobilenetv2(size=32)    Sandler et al. 2018, width 1.0, Table 2's (t, c, n, s) settings

`size` is the input side (224 for ImageNet; 32 keeps every layer and channel while making an
inference cheap to simulate). Weights use He initialisation, so activations keep their scale
through the depth; BatchNorm statistics are random but well conditioned.
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

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        pad = k // 2
        y = self.node(
            "Conv", [x, self.const("w", w)], kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, group=group, dilations=[1, 1],
        )  # fmt: skip
        return self.batch_norm(y, cout)

    def batch_norm(self, x: str, c: int) -> str:
        rng = self.rng
        params = [
            rng.uniform(0.5, 1.5, c),  # scale
            rng.uniform(-0.2, 0.2, c),  # bias
            rng.uniform(-0.2, 0.2, c),  # running mean
            rng.uniform(0.5, 1.5, c),  # running variance
        ]
        names = [self.const("bn", p) for p in params]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-5, momentum=0.9)

    def relu6(self, x: str) -> str:
        low, high = self.const("lo", np.array(0.0)), self.const("hi", np.array(6.0))
        return self.node("Clip", [x, low, high])

    def classifier(self, x: str, features: int, classes: int) -> str:
        pooled = self.node("GlobalAveragePool", [x])
        flat = self.node("Flatten", [pooled], axis=1)
        bound = 1 / np.sqrt(features)
        w = self.rng.uniform(-bound, bound, (classes, features))
        b = self.rng.uniform(-bound, bound, classes)
        return self.node(
            "Gemm", [flat, self.const("fc", w), self.const("fc", b)], alpha=1.0, beta=1.0, transB=1
        )

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
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
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


MODELS = {"resnet18": resnet18, "mobilenetv2": mobilenetv2}

"""imcc.tools.zoo's large models, VGG-16 and ResNet-50: parameter counts against the published
figures, layer structure and map sizes against the papers' tables, onnxruntime inference at a
small input, and, when torchvision is installed, the same outputs as torchvision's modules
loaded with our weights."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from imcc.tools import zoo
from tests.conftest import onnxruntime_run

# What torchvision's sum(p.numel() for p in model.parameters()) gives at 1000 classes (and the
# figures its model cards publish): conv and linear weights and biases and BatchNorm's scale and
# shift; BatchNorm's running mean and variance are buffers, not parameters, and are not counted.
PUBLISHED_PARAMETERS = {"vgg16": 138_357_544, "resnet50": 25_557_032}
# float32 inference of the same weights in torch and onnxruntime differs only in summation
# order, expected around 1e-6 of the largest logit (not measured: torch is absent where this
# was written); 1e-4 leaves room without hiding a wrong layer, which moves logits by O(1).
REL_TOL_TORCH = 1e-4


@pytest.fixture(scope="module")
def vgg16_224() -> onnx.ModelProto:
    return zoo.vgg16()  # 224 by default; its first fc layer alone holds 25088 x 4096 weights


def _parameters(model: onnx.ModelProto) -> int:
    statistics = {i for n in model.graph.node if n.op_type == "BatchNormalization"
                  for i in n.input[3:5]}  # fmt: skip
    return sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.name not in statistics)


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in inferred.graph.value_info
    }


def test_registered_apart_from_the_models_simulated_at_224() -> None:
    assert set(zoo.LARGE_MODELS) == {"vgg16", "resnet50"}
    assert set(zoo.MODELS) == {"resnet18", "mobilenetv2"}


def test_vgg16_has_the_published_parameter_count(vgg16_224: onnx.ModelProto) -> None:
    assert _parameters(vgg16_224) == PUBLISHED_PARAMETERS["vgg16"]


def test_resnet50_has_the_published_parameter_count() -> None:
    # no layer's size depends on the input side (global average pool before the fc)
    assert _parameters(zoo.resnet50(size=32)) == PUBLISHED_PARAMETERS["resnet50"]


def test_vgg16_is_configuration_d() -> None:
    model = zoo.vgg16(size=64, classes=10)
    kinds = [n.op_type for n in model.graph.node]
    stages = [["Conv", "Relu"] * n + ["MaxPool"] for n in (2, 2, 3, 3, 3)]
    classifier = ["Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    assert kinds == [k for stage in stages for k in stage] + classifier
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    fc = [inits[n.input[1]] for n in model.graph.node if n.op_type == "Gemm"]
    # at 64 the last pool leaves 2x2x512 = 2048 features, not 224's 7x7x512
    assert fc == [(4096, 2048), (4096, 4096), (10, 4096)]


def test_resnet50_has_16_bottlenecks_and_4_projection_shortcuts() -> None:
    model = zoo.resnet50(size=32)
    kinds = Counter(n.op_type for n in model.graph.node)
    # convolutions: the stem + 16 blocks x 3 (with the fc, the 50 layers) + 4 projections;
    # a ReLU after the stem, two inside each block and one after each residual sum
    assert kinds == Counter(Conv=53, BatchNormalization=53, Relu=49, Add=16, MaxPool=1,
                            GlobalAveragePool=1, Flatten=1, Gemm=1)  # fmt: skip
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # v1.5: the stride-2 convolutions are the stem, each downsampling block's 3x3 and its
    # projection, never a 1x1 on the main path
    strides = [next(list(a.ints) for a in n.attribute if a.name == "strides") for n in convs]
    strided = [inits[n.input[1]][2:] for n, s in zip(convs, strides, strict=True) if s == [2, 2]]
    assert strided == [(7, 7)] + [(3, 3), (1, 1)] * 3


def test_vgg16_maps_at_224(vgg16_224: onnx.ModelProto) -> None:
    shapes = _inferred_shapes(vgg16_224)
    pools = [n.output[0] for n in vgg16_224.graph.node if n.op_type == "MaxPool"]
    assert [shapes[p] for p in pools] == [
        ["batch", c, s, s] for c, s in ((64, 112), (128, 56), (256, 28), (512, 14), (512, 7))
    ]
    flatten = next(n.output[0] for n in vgg16_224.graph.node if n.op_type == "Flatten")
    assert shapes[flatten] == ["batch", 7 * 7 * 512]


def test_resnet50_maps_at_224() -> None:
    model = zoo.resnet50()
    shapes = _inferred_shapes(model)
    nodes = model.graph.node
    # a block's output is the ReLU after its residual sum; stages end after 3, 7, 13, 16 blocks
    blocks = [nodes[i + 1].output[0] for i, n in enumerate(nodes) if n.op_type == "Add"]
    stem = next(n.output[0] for n in nodes if n.op_type == "MaxPool")
    assert shapes[stem] == ["batch", 64, 56, 56]
    assert [shapes[blocks[i - 1]] for i in (3, 7, 13, 16)] == [
        ["batch", c, s, s] for c, s in ((256, 56), (512, 28), (1024, 14), (2048, 7))
    ]


@pytest.mark.parametrize("name", sorted(zoo.LARGE_MODELS))
def test_onnxruntime_runs_at_32_with_logits_of_order_one(name: str) -> None:
    model = zoo.LARGE_MODELS[name](size=32, classes=10)
    onnx.checker.check_model(model, full_check=True)
    image = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    logits = onnxruntime_run(model, image)
    assert logits.shape == (1, 10)
    assert np.isfinite(logits).all()
    # He initialisation (and ResNet-50's damped residual branches) keep the scale: neither
    # vanished nor grown with the depth (without the damping ResNet-50's are ~1e4)
    assert 0.1 < logits.std() < 30


def test_vgg16_rejects_an_input_smaller_than_its_five_pools() -> None:
    with pytest.raises(ValueError, match="at least 32 pixels, not 16"):
        zoo.vgg16(size=16)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = (zoo.resnet50(size=32, seed=s).graph.initializer[0] for s in (0, 0, 1))
    assert numpy_helper.to_array(a).tobytes() == numpy_helper.to_array(b).tobytes()
    assert not np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(c))


def _torchvision_with_our_weights(name: str, model: onnx.ModelProto) -> Any:
    torchvision = pytest.importorskip("torchvision")
    import torch

    module = getattr(torchvision.models, name)(weights=None).eval()
    state = module.state_dict()
    keys = [k for k in state if not k.endswith("num_batches_tracked")]
    ours = [numpy_helper.to_array(i) for i in model.graph.initializer]
    # same layers in the same order: every weight, bias and BatchNorm statistic has its shape
    assert [tuple(state[k].shape) for k in keys] == [w.shape for w in ours]
    state.update({k: torch.from_numpy(w.copy()) for k, w in zip(keys, ours, strict=True)})
    module.load_state_dict(state)
    return module


@pytest.mark.parametrize(("name", "size"), [("vgg16", 224), ("resnet50", 64)])
def test_equals_torchvision_loaded_with_the_same_weights(name: str, size: int) -> None:
    # VGG-16 at 224 only: torchvision's AdaptiveAvgPool2d((7, 7)) is the identity there alone
    pytest.importorskip("torchvision")
    import torch

    model = zoo.LARGE_MODELS[name](size=size)
    module = _torchvision_with_our_weights(name, model)
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED_PARAMETERS[name]
    image = np.random.default_rng(2).standard_normal((1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(image)).numpy()
    got = onnxruntime_run(model, image)
    assert np.abs(got - expected).max() <= REL_TOL_TORCH * np.abs(expected).max()

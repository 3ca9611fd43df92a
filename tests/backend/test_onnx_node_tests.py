"""The official ONNX backend node tests (onnx.backend.test), through imcc.backend, for every op
type the ONNX frontend supports; plus the light real models that ship in the onnx wheel.

Cases are generated in memory by onnx (no files, no network) and selected by the domain and
op type of their first node (ai.onnx and ai.onnx.ml), not by name regex (names are leaky:
`^test_conv` matches convtranspose). A case that uses an op, dtype or feature imcc does not
support is skipped with the reason (imcc.backend.Unsupported); it never counts as a pass. Any
other error, an internal error among them, and any output of the wrong shape fails the case.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings

import onnx
import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

import imcc.backend
from imcc.frontends.onnx import supported_op_types

warnings.filterwarnings("ignore", category=RuntimeWarning)
os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="imcc-onnx-home-"))  # light models

# (domain, op type) of every converter, the default domain and ai.onnx.ml (trees, scalers)
SUPPORTED = {(domain, op) for domain in ("", "ai.onnx.ml") for op in supported_op_types(domain)}


def first_op(model: onnx.ModelProto) -> tuple[str, str]:
    node = model.graph.node[0]
    return ("" if node.domain in ("", "ai.onnx") else node.domain, node.op_type)


NODE_CASES = sorted(
    case.name
    for case in load_model_tests(kind="node")
    if "_expanded" not in case.name and first_op(case.model) in SUPPORTED
)

backend_test = onnx.backend.test.BackendTest(imcc.backend.ImccBackend, __name__)
backend_test.include(r"^(" + "|".join(map(re.escape, NODE_CASES)) + r")_cpu$")
# The real models compile and run on the simulated chip, a minute or more each for the largest
# (inception_v2 ~100 s, resnet50 ~95 s, vgg19 and densenet121 ~65 s on 2 cores): those four
# run when IMCC_REAL_MODELS=all, so that the default suite stays near ten minutes.
REAL_MODELS = ["bvlc_alexnet", "inception_v1", "shufflenet", "squeezenet", "zfnet512"]
if os.environ.get("IMCC_REAL_MODELS") == "all":
    REAL_MODELS += ["densenet121", "inception_v2", "resnet50", "vgg19"]
backend_test.include(r"^test_(" + "|".join(REAL_MODELS) + r")_cpu$")
# Dtypes an IMC accelerator's float interface does not take.
backend_test.exclude(r"(?i)(float8|float4|int4|int2|bfloat16|e4m3|e5m2|e8m0|float16|double)")

globals().update(backend_test.enable_report().test_cases)

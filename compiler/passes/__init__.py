"""Compiler passes; importing this package registers every pass with the pass manager."""

from imcc.compiler.passes import canonicalize, emit, placement, quantize, tiling, trees
from imcc.compiler.passes.manager import PASSES, Context, parse_pipeline, run_pipeline

DEFAULT_PIPELINE = "canonicalize,quantize,bitslice,tile,adc-range,place,acam-map,schedule,emit"

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "Context",
    "canonicalize",
    "emit",
    "parse_pipeline",
    "placement",
    "quantize",
    "run_pipeline",
    "tiling",
    "trees",
]

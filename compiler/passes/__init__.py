"""Compiler passes, one per module named after the pass; importing this package registers
every pass with the pass manager."""

from imcc.compiler.passes import (
    acam_map,
    adc_range,
    bitslice,
    canonicalize,
    emit,
    place,
    quantize,
    replicate,
    schedule,
    tile,
)
from imcc.compiler.passes.manager import PASSES, Context, parse_pipeline, run_pipeline

DEFAULT_PIPELINE = "canonicalize,quantize,bitslice,tile,adc-range,place,acam-map,schedule,emit"

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "Context",
    "acam_map",
    "adc_range",
    "bitslice",
    "canonicalize",
    "emit",
    "parse_pipeline",
    "place",
    "quantize",
    "replicate",
    "run_pipeline",
    "schedule",
    "tile",
]

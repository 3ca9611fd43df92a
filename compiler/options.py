"""Compile options shared by the driver and the passes that take them as fields: the closed
sets among them, and the checks that name a bad option."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from imcc.isa.diagnostics import CompileError, OptionLoc
from imcc.isa.target import SignEncoding, Target


class Schedule(enum.StrEnum):
    """How the model is laid over the cores (compiler/driver.py OPTIONS says each)."""

    PACKED = "packed"
    LATENCY = "latency"
    THROUGHPUT = "throughput"
    BALANCED = "balanced"


class Calibration(enum.StrEnum):
    """How calibration data sets input scales and ADC ranges."""

    MINMAX = "minmax"  # the largest value seen
    PERCENTILE = "percentile"  # the `percentile`-th, so rare outliers clip


def check_options(target: Target, options: dict[str, Any]) -> None:
    """Reject combinations that cannot work, naming the options involved."""
    for name in ("weight_bits", "input_bits"):
        if not 2 <= options[name] <= 24:
            raise CompileError(
                f"{name} = {options[name]} is outside the supported range [2, 24]", OptionLoc(name)
            )
    xbar = target.xbar
    if xbar.sign_encoding == SignEncoding.DIFFERENTIAL:
        needed = 2 * -(-(options["weight_bits"] - 1) // xbar.cell_bits)
    else:
        needed = -(-options["weight_bits"] // xbar.cell_bits)
    if needed > xbar.cols:
        raise CompileError(
            f"weight_bits = {options['weight_bits']} with cell_bits = {xbar.cell_bits} and "
            f"sign_encoding = {xbar.sign_encoding} needs {needed} columns per output, but "
            f"cols = {xbar.cols}",
            OptionLoc("weight_bits"),
        )
    if options.get("calibration", Calibration.MINMAX) not in tuple(Calibration):
        raise CompileError(
            f"calibration = {options['calibration']!r}; expected minmax or percentile",
            OptionLoc("calibration"),
        )
    percentile = options.get("percentile", 99.99)
    number = isinstance(percentile, int | float | np.integer | np.floating)
    if isinstance(percentile, bool) or not number or not 0 < float(percentile) <= 100:
        raise CompileError(
            f"percentile = {percentile!r} must be a number in (0, 100]", OptionLoc("percentile")
        )

"""The accuracy check of `imcc.compile`: with calibration data, a compile whose ADC, bits or
calibration lose more than a point against the float model says so in one warning that names
the option to change; a compile at the defaults that loses nothing says nothing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import imcc
from imcc.tools.demo import digits, mlp_to_onnx, train_mlp
from tests.conftest import mlp_onnx


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[object, np.ndarray]:
    data = digits()
    return mlp_to_onnx(train_mlp(data)), data.x_train


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_default_compile_of_the_digits_mlp_does_not_warn(
    digits_mlp: tuple[object, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    model, x = digits_mlp
    with caplog.at_level(logging.WARNING, logger="imcc"):
        imcc.compile(model, calibrate=x)
    assert warnings_of(caplog) == []


def test_a_4bit_adc_warns_naming_adc_bits(
    digits_mlp: tuple[object, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    model, x = digits_mlp
    with caplog.at_level(logging.WARNING, logger="imcc"):
        imcc.compile(model, calibrate=x, adc_bits=4)
    (message,) = warnings_of(caplog)
    assert message.startswith(
        "accuracy lost at compile time: on 256 calibration samples, output 'probabilities' "
        "agrees with the float model's top-1 on "
    )
    assert "the 4-bit ADC loses the low bits: raise adc_bits (to 9 for exact results)" in message
    assert "\n" not in message  # one line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imcc"):  # the check can be skipped
        imcc.compile(model, calibrate=x, adc_bits=4, check_accuracy=False)
    assert warnings_of(caplog) == []


def test_too_few_weight_bits_warn_naming_weight_bits(
    digits_mlp: tuple[object, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    model, x = digits_mlp
    with caplog.at_level(logging.WARNING, logger="imcc"):
        imcc.compile(model, calibrate=x, weight_bits=2)
    (message,) = warnings_of(caplog)
    assert message.endswith("raise weight_bits (now 2) (check_accuracy=False skips this check)")


def test_a_regressor_is_judged_by_its_relative_error(caplog: pytest.LogCaptureFixture) -> None:
    """One output per sample: the relative error against the float model, in %."""
    model = mlp_onnx([16, 1], ["none"], seed=4)
    x = np.random.default_rng(4).normal(size=(64, 16))
    with caplog.at_level(logging.WARNING, logger="imcc"):
        imcc.compile(model, calibrate=x, weight_bits=2, input_bits=2)
    (message,) = warnings_of(caplog)
    assert "output 'y' is " in message and "% off the float model (relative error)" in message
    assert "raise weight_bits (now 2) or input_bits (now 2)" in message


def test_without_calibration_data_nothing_is_checked(
    digits_mlp: tuple[object, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """Run-time abs-max scales: the compile has no data to measure a loss on."""
    model, _ = digits_mlp
    with caplog.at_level(logging.WARNING, logger="imcc"):
        imcc.compile(model, adc_bits=4)
    assert warnings_of(caplog) == []


def test_a_model_too_large_to_simulate_cheaply_is_not_checked(
    digits_mlp: tuple[object, np.ndarray],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check simulates at most ACCURACY_MACS multiply-accumulates; a model that would get
    fewer than ACCURACY_MIN_SAMPLES samples for them is skipped, saying so at INFO level."""
    import imcc.api

    monkeypatch.setattr(imcc.api, "ACCURACY_MACS", 99 * (64 * 64 + 64 * 10))  # 99 samples
    model, x = digits_mlp
    with caplog.at_level(logging.INFO, logger="imcc"):
        imcc.compile(model, calibrate=x, adc_bits=4)
    assert warnings_of(caplog) == []
    assert [r.getMessage() for r in caplog.records] == [
        "accuracy check skipped: 4736 crossbar MACs per sample are too many to simulate 100 "
        "calibration samples at compile time"
    ]

"""The analog-CAM unit in the runtime: search and leaf semantics, the device model's noise,
costs, and what the loader and the simulator reject."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

import imcc
from imcc.compiler.target import load_target
from imcc.isa import spec
from imcc.isa.acam import CamCode, CamImage
from imcc.isa.diagnostics import BinaryFormatError, SimulationError
from imcc.isa.encoding import make
from imcc.isa.numerics import accepts, accumulate_leaves, driven_levels, rank_code, row_matches
from imcc.isa.program import Binding, Program, TensorInfo
from imcc.runtime.acam import CamDevice
from imcc.runtime.devices import make_cam_device
from imcc.runtime.semantics.acam import match_words

TARGET = load_target("xtime")
LEVELS = TARGET.acam.levels if TARGET.acam else 0


def leaf_program(leaves: np.ndarray, single: int = 0) -> Program:
    """Core 0: search an all-don't-care image (every row matches), add its leaves to 0."""
    rows = leaves.shape[0]
    image = CamImage(np.zeros((rows, 1)), np.full((rows, 1), LEVELS), leaves, rows)
    table = CamCode(np.array([0]), np.array([0]), np.array([1]), np.array([0, 0]),
                    np.zeros(0), np.zeros(0))  # fmt: skip
    width = leaves.shape[1]
    code = [
        make(spec.CTL_SET, 0, 0),  # x in global 0
        make(spec.CTL_SET, 1, 100),  # buffer: x
        make(spec.CTL_SET, 2, 200),  # levels
        make(spec.CTL_SET, 3, 300),  # match vector
        make(spec.CTL_SET, 4, 400),  # accumulator
        make(spec.CTL_SET, 5, 16),  # output in global 16
        make(spec.MEM_LOAD, 1, 0, 1),
        make(spec.ACAM_ENCODE, 2, 1, 0, 1, 1),
        make(spec.ACAM_SEARCH, 0, 2, 3, 0),
        make(spec.ACAM_LEAF, 0, 3, 4, width, single),
        make(spec.MEM_STORE, 5, 4, width),
        make(spec.CTL_HALT),
    ]
    return Program(
        target=TARGET, code=[code], inputs=[TensorInfo(name="x", shape=(1,), addr=0)],
        outputs=[TensorInfo(name="y", shape=(width,), addr=16, dtype="float64")],
        cam_images=[image], cam_bindings=[Binding(0, 0, 0)], cam_codes=[table],
    )  # fmt: skip


def test_leaf_sums_follow_row_order_one_add_at_a_time() -> None:
    """1e16 + 1 rounds back to 1e16 (ties to even), so the sum in row order is 1; adding the
    two ones first (pairwise, or reordered) would give 2."""
    leaves = np.array([[1e16], [1.0], [-1e16], [1.0]])
    y = imcc.Simulator(leaf_program(leaves), mode="functional").run(np.zeros((3, 1))).outputs["y"]
    expected = 0.0
    for value in leaves[:, 0]:
        expected += value
    np.testing.assert_array_equal(y, np.full((3, 1), expected))
    assert expected == 1.0


def test_a_single_precision_accumulator_rounds_every_sum() -> None:
    leaves = np.array([[0.1], [0.2], [0.3]], dtype=np.float64)
    y = imcc.Simulator(leaf_program(leaves, single=1), mode="functional").run(np.zeros((1, 1)))
    expected = np.float32(0)
    for value in leaves[:, 0].astype(np.float32):
        expected = np.float32(expected + value)
    assert y.outputs["y"][0, 0] == float(expected)


def test_search_is_the_threshold_comparison_for_any_programmed_bounds() -> None:
    """The accept table (one bit per cell, level and row) is exact: compare with T_low <= v <
    T_high evaluated directly on noisy thresholds."""
    rng = np.random.default_rng(1)
    rows, cols = 70, 5
    low = rng.integers(0, LEVELS, (rows, cols))
    high = np.minimum(low + rng.integers(1, LEVELS, (rows, cols)), LEVELS)
    image = CamImage(low, high, np.zeros((rows, 0)))
    state = CamDevice("noisy", 0.7).program(image, 0, LEVELS, rng)
    levels = rng.integers(0, LEVELS, (cols, 40))
    words = match_words(state, levels)
    bits = np.unpackbits(np.ascontiguousarray(words.T).astype("<u4").view(np.uint8), axis=1,
                         bitorder="little")[:, :rows]  # fmt: skip
    v = levels.T[:, None, :]
    direct = ((state.lower[None] <= v) & (v < state.upper[None])).all(axis=2)
    np.testing.assert_array_equal(bits.astype(bool), direct)
    ideal = CamDevice().program(image, 0, LEVELS, rng)
    assert np.all(np.isinf(ideal.lower[low == 0])) and np.all(
        ideal.lower[low > 0] == low[low > 0] - 0.5
    )


def test_rank_codes_mind_less_than_versus_less_or_equal_and_place_nan() -> None:
    cuts, inclusive = np.array([1.0, 1.0, 2.0]), np.array([0, 1, 1])  # x < 1, x <= 1, x <= 2
    x = np.array([0.5, 1.0, 1.5, 2.0, 2.5, np.nan])
    np.testing.assert_array_equal(rank_code(x, cuts, inclusive, False), [0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(rank_code(x, cuts, inclusive, True), [1, 2, 3, 3, 4, 0])


def test_driven_levels_round_half_to_even_clip_and_drive_nan_low() -> None:
    x = np.array([np.nan, 0.5, 1.5, 2.4999, -0.6, 9.0, -np.inf, np.inf])
    np.testing.assert_array_equal(driven_levels(x, 4), [0, 0, 2, 2, 0, 3, 0, 3])


def test_a_row_matches_when_every_cell_accepts_its_level() -> None:
    rng = np.random.default_rng(5)
    low = rng.integers(0, LEVELS, (30, 4))
    high = np.minimum(low + rng.integers(1, LEVELS, (30, 4)), LEVELS)
    levels = rng.integers(0, LEVELS, (4, 20))
    expected = [[all(low[r, c] <= levels[c, b] < high[r, c] for c in range(4)) for r in range(30)]
                for b in range(20)]  # fmt: skip
    np.testing.assert_array_equal(row_matches(levels, low, high), expected)
    assert accepts(np.float64(2.0), 1.5, 2.5) and not accepts(np.float64(2.0), 2.5, np.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaves_accumulate_one_after_another_in_row_order(dtype: type) -> None:
    """Exactly the sequential sum, float32 rounding after every add: compare with a loop."""
    rng = np.random.default_rng(6)
    leaves = rng.normal(size=(50, 3)) * 10.0 ** rng.integers(-8, 8, (50, 1))
    match = rng.random((12, 50)) < 0.3
    acc = (rng.normal(size=(12, 3)) * 1e3).astype(dtype)
    acc[0] = 0.0
    expected = acc.copy()
    for b in range(12):
        for r in range(50):
            if match[b, r]:
                expected[b] = expected[b] + leaves[r].astype(dtype)
    samples, rows = np.nonzero(match)
    accumulate_leaves(acc, samples, rows, leaves)
    assert acc.dtype == dtype and acc.tobytes() == expected.tobytes()


def forest() -> tuple[imcc.Binary, np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x, y)
    return imcc.compile(model, target="xtime"), x, model.predict(x)


def test_noise_moves_bounds_reproducibly_and_zero_noise_is_ideal() -> None:
    binary, x, labels = forest()
    ideal = imcc.Simulator(binary, mode="functional").run(x).outputs["probabilities"]
    zero = imcc.Simulator(binary, mode="functional", cam_device=0.0).run(x).outputs
    np.testing.assert_array_equal(zero["probabilities"], ideal)
    noisy = [imcc.Simulator(binary, mode="functional", cam_device=0.6, seed=s).run(x).outputs
             for s in (3, 3, 4)]  # fmt: skip
    np.testing.assert_array_equal(noisy[0]["probabilities"], noisy[1]["probabilities"])
    assert not np.array_equal(noisy[0]["probabilities"], noisy[2]["probabilities"])
    assert not np.array_equal(noisy[0]["probabilities"], ideal)
    agreement = np.mean(noisy[0]["label"].reshape(-1) == labels)
    assert 0.5 < agreement < 1.0


def test_cam_devices_by_name_and_sigma() -> None:
    assert make_cam_device(None).exact and make_cam_device("ideal").exact
    assert make_cam_device(0.25).sigma == 0.25
    with pytest.raises(SimulationError, match="unknown CAM device 'rram'"):
        make_cam_device("rram")
    with pytest.raises(SimulationError, match="must be >= 0"):
        make_cam_device(-1.0)


def test_cycle_report_prices_searches_leaf_reads_and_encoding() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    model = GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    report = imcc.Simulator(imcc.compile(model, target="xtime")).run(x[:2]).report
    counts, energy = report.counts, report.energy_breakdown_pj
    assert counts["cam_searches"] >= 1 and counts["leaf_reads"] == 5  # one leaf per tree
    assert counts["acam_comparisons"] > 0
    assert energy["cam_search"] > 0 and energy["cam_leaf"] > 0 and energy["acam_encode"] > 0
    assert report.cycles is not None and report.cycles > TARGET.acam.search_cycles  # type: ignore[union-attr]


def test_nan_inputs_are_rejected_without_a_cam_but_coded_with_one() -> None:
    binary, x, _ = forest()
    row = x[:1].copy()
    row[0, 3] = np.nan
    assert imcc.Simulator(binary, mode="functional").run(row).outputs["label"].shape == (1,)
    row[0, 3] = np.inf  # sklearn would refuse it; the rank code takes it above every cut
    imcc.Simulator(binary, mode="functional").run(row)


def test_the_loader_checks_cam_images_tables_and_operands() -> None:
    program = leaf_program(np.ones((4, 1)))
    program.cam_images[0].high[0, 0] = LEVELS + 1
    with pytest.raises(BinaryFormatError, match=r"CAM\[0\].*bounds must lie in"):
        imcc.Simulator(program)
    program = leaf_program(np.ones((4, 2)))
    program.code[0][9] = make(spec.ACAM_LEAF, 0, 3, 4, 1, 0)
    with pytest.raises(BinaryFormatError, match="n = 1 but the leaf RAM of m0 is 2 wide"):
        imcc.Simulator(program)
    program = leaf_program(np.ones((4, 1)))
    program.cam_bindings = []
    with pytest.raises(BinaryFormatError, match="CAM array m0 holds no image when this runs"):
        imcc.Simulator(program)
    program = leaf_program(np.ones((4, 1)))
    program.target = load_target("edge-rram")
    with pytest.raises(BinaryFormatError, match="uses analog-CAM arrays but target"):
        imcc.Simulator(program)
    program = leaf_program(np.ones((4, 1)))
    program.cam_codes[0].cells[0] = 0
    with pytest.raises(BinaryFormatError, match=r"CAMCODE\[0\].*need 1 cells"):
        imcc.Simulator(program)


def test_container_round_trips_a_compiled_forest() -> None:
    binary, x, _ = forest()
    again = imcc.Binary.from_bytes(binary.data)
    assert again.program.same_as(binary.program)
    a = imcc.Simulator(again, mode="functional").run(x[:50]).outputs["probabilities"]
    b = imcc.Simulator(binary, mode="functional").run(x[:50]).outputs["probabilities"]
    np.testing.assert_array_equal(a, b)


def test_the_numpy_definition_and_the_compiled_kernels_give_the_same_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binary, x, _ = forest()
    noisy = {"mode": "functional", "cam_device": 0.4, "seed": 1}
    compiled = imcc.Simulator(binary, **noisy).run(x).outputs  # type: ignore[arg-type]
    monkeypatch.setattr("imcc.runtime.semantics.acam.kernels", lambda: None)
    reference = imcc.Simulator(binary, **noisy).run(x).outputs  # type: ignore[arg-type]
    for name in reference:
        np.testing.assert_array_equal(compiled[name], reference[name])

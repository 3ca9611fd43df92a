"""Fuzzing the compiler's user inputs: pipelines, compile options and target TOML files.

Each case ends in a binary or a Diagnostic with a location (tests/fuzzing.py); anything else is
a finding. Seeded; IMCC_FUZZ_SCALE multiplies the case counts for the long run.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

import imcc
from imcc.compiler.passes import PASSES
from imcc.compiler.target import load_target, preset_names
from tests.conftest import mlp_onnx
from tests.fuzzing import Tally, cases

MODEL = mlp_onnx([12, 5], ["relu"], seed=0)
ROOT = Path(__file__).resolve().parents[2]
NAMES = [*PASSES, "canonicalise", "", "emit{x=1}", "place{spread=true}", "tile{", "{}", "é"]


def test_random_pipelines_end_cleanly() -> None:
    rng = random.Random(11)
    tally = Tally("compile pipelines")
    for i in range(cases(300)):
        stages = [rng.choice(NAMES) for _ in range(rng.randint(0, 10))]
        if rng.random() < 0.3:  # often a permutation of the default passes
            stages = rng.sample(list(PASSES), len(PASSES))
        pipeline = rng.choice([",", ", ", ",,"]).join(stages)
        tally.run(f"case {i}: {pipeline!r}", lambda p=pipeline: imcc.compile(MODEL, pipeline=p))
    tally.assert_clean()


VALUES: list[object] = [None, -1, 0, 1, 2, 3, 8, 24, 25, 1 << 40, 2.5, "8", "x", True, [], "column",
                        "offset", "percentile", 50.0, float("nan"), float("inf")]  # fmt: skip
OPTIONS = ["weight_bits", "input_bits", "calibration", "percentile", "spread", "schedule",
           "phases", "rows", "cols", "cell_bits", "dac_bits", "adc_bits", "cols_per_adc",
           "sign_encoding", "adc_range", "bogus"]  # fmt: skip


def test_random_compile_options_end_cleanly() -> None:
    rng = random.Random(12)
    data = np.random.default_rng(12).normal(size=(20, 12))
    tally = Tally("compile options")
    for i in range(cases(300)):
        options = {rng.choice(OPTIONS): rng.choice(VALUES) for _ in range(rng.randint(1, 3))}
        calibrate = data if rng.random() < 0.3 else None
        tally.run(
            f"case {i}: {options}",
            lambda o=options, c=calibrate: imcc.compile(MODEL, calibrate=c, **o),
        )
    tally.assert_clean()


TOKENS = ["-1", "0", "1", "1e400", '"x"', "true", "[]", "{}", "18446744073709551616", '"pcmm"',
          '"ideal"', "0.5", "nan", '"offset"', "= 1", "[xbar]", "[nope]"]  # fmt: skip


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    kind = rng.randrange(5)
    if kind == 0:
        del lines[i]
    elif kind == 1:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif kind == 2 and "=" in lines[i]:  # misspell a key: swap two letters
        key, _, value = lines[i].partition("=")
        j = rng.randrange(max(1, len(key.strip()) - 1))
        stripped = key.strip()
        swapped = stripped[:j] + stripped[j + 1 : j + 2] + stripped[j : j + 1] + stripped[j + 2 :]
        lines[i] = f"{swapped} ={value}"
    elif "=" in lines[i]:  # a new value
        key = lines[i].partition("=")[0]
        lines[i] = f"{key}= {rng.choice(TOKENS)}"
    else:
        lines.insert(i, rng.choice(TOKENS))
    return "\n".join(lines) + "\n"


def test_mutated_target_files_end_cleanly(tmp_path: Path) -> None:
    rng = random.Random(13)
    texts = [(ROOT / "compiler" / "targets" / f"{n}.toml").read_text() for n in preset_names()]
    tally = Tally("target files")
    for i in range(cases(300)):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        path = tmp_path / f"t{i % 8}.toml"
        path.write_text(text)

        def load_and_compile(p: Path = path) -> object:
            target = load_target(str(p))
            if target.core.arrays and target.chip.cores * target.core.arrays <= 4096:
                return imcc.compile(MODEL, target=target)
            return target

        tally.run(f"case {i}", load_and_compile)
    tally.assert_clean()

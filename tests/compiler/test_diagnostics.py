"""User errors of the compiler: a model on a target without the unit it needs, a pipeline whose
passes run before their prerequisites, a target file with a misspelt key or device; each a
Diagnostic that names what is wrong and where (the node, the pipeline option, file:line:col)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import imcc
from imcc.compiler import driver
from imcc.compiler.passes import DEFAULT_PIPELINE, PASSES
from imcc.compiler.target import DEFAULTABLE, load_target
from imcc.isa import presets
from imcc.isa.diagnostics import CompileError, NodeLoc, OptionLoc, SourceLoc, TargetError
from tests.conftest import mlp_onnx

MODEL = mlp_onnx([20, 6], ["relu"], seed=0)
ROOT = Path(__file__).resolve().parents[2]
EDGE = (ROOT / "compiler" / "targets" / "edge-rram.toml").read_text()


def tree_model() -> object:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, (x[:, 0] > 0).astype(int))


# -- a unit the target does not have -----------------------------------------------------------


def test_a_crossbar_model_on_a_target_without_crossbars_names_the_layer() -> None:
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, target="xtime")
    assert info.value.loc == NodeLoc("fc0", "QDense")
    assert (
        "this layer's matrix multiply needs crossbar arrays, but target 'xtime' has none "
        "(core.arrays = 0; its analog-CAM unit runs tree ensembles only)"
    ) in info.value.message


def test_a_tree_model_on_a_target_without_a_cam_names_the_ensemble() -> None:
    with pytest.raises(CompileError) as info:
        imcc.compile(tree_model(), target="edge-rram")
    assert isinstance(info.value.loc, NodeLoc) and info.value.loc.op_type == "TreeEnsemble"
    assert "target 'edge-rram' has no analog-CAM unit for tree ensembles" in info.value.message


# -- pipelines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        (
            "emit",
            "pass 'emit' needs 'canonicalize', 'quantize', 'bitslice', 'tile', 'place', "
            "'schedule' to run before it",
        ),
        (
            "canonicalize,quantize,emit",
            "pass 'emit' needs 'bitslice', 'tile', 'place', 'schedule' to run before it",
        ),
        (
            "canonicalize,quantize,tile,bitslice,place,schedule,emit",
            "pass 'tile' needs 'bitslice' to run before it; 'bitslice' must move before it",
        ),
    ],
)
def test_a_pass_before_its_prerequisites_is_refused_before_anything_runs(
    pipeline: str, message: str
) -> None:
    ran: list[str] = []
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, pipeline=pipeline, print_after=lambda name, graph: ran.append(name))
    assert message in info.value.message
    assert info.value.loc == OptionLoc("pipeline")
    assert ran == []  # checked before the first pass ran


def test_prerequisites_follow_the_model_and_the_target() -> None:
    """schedule needs acam-map only for trees; emit needs adc-range only for per-column ADC
    ranges: a pipeline without them compiles an MLP for a full-scale ADC."""
    short = "canonicalize,quantize,bitslice,tile,place,schedule,emit"
    assert imcc.compile(MODEL, pipeline=short).program.images
    with pytest.raises(CompileError, match="pass 'emit' needs 'adc-range' to run before it"):
        imcc.compile(MODEL, pipeline=short, adc_range="column")
    with pytest.raises(CompileError, match="pass 'schedule' needs 'acam-map' to run before it"):
        imcc.compile(tree_model(), target="xtime", pipeline=short)


def test_a_misspelt_pass_names_the_closest_and_lists_the_passes() -> None:
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, pipeline="canonicalise,quantize")
    assert info.value.message == (
        "unknown pass 'canonicalise' (did you mean 'canonicalize'?); passes are "
        f"{', '.join(sorted(PASSES))}"
    )
    assert info.value.loc == OptionLoc("pipeline")


def test_a_pipeline_that_does_not_end_in_emit_is_refused_up_front() -> None:
    ran: list[str] = []
    with pytest.raises(CompileError, match="pipeline 'canonicalize,quantize' does not end in"):
        imcc.compile(
            MODEL, pipeline="canonicalize,quantize", print_after=lambda n, g: ran.append(n)
        )
    assert ran == []


def test_the_default_pipeline_meets_every_prerequisite() -> None:
    names = [stage.split("{")[0] for stage in DEFAULT_PIPELINE.split(",")]
    for i, name in enumerate(names):
        assert set(PASSES[name].requires) <= set(names[:i]), name


# -- target files ------------------------------------------------------------------------------


def write_target(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """edge-rram with `old` replaced by `new`; the path and the (1-based) line changed."""
    assert old in EDGE
    text = EDGE.replace(old, new, 1)
    path = tmp_path / "t.toml"
    path.write_text(text)
    line = next(
        i for i, s in enumerate(text.splitlines(), start=1) if s.startswith(new.split("\n")[-1])
    )
    return path, line


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "weight_bits = 8",
            "weigth_bits = 4",
            "[defaults] has unknown key 'weigth_bits' (did you mean 'weight_bits'?)",
        ),
        (  # a misspelt required key is unknown (with its near match), not "missing"
            "adc_bits = 9",
            "adc_bit = 9",
            "[xbar] has unknown key 'adc_bit' (did you mean 'adc_bits'?)",
        ),
        (
            "clock_ghz = 1.0",
            "clock_gzh = 1.0",
            "[chip] has unknown key 'clock_gzh' (did you mean 'clock_ghz'?)",
        ),
        (
            'device = "ideal"',
            'device = "pcmm"',
            "[xbar]: device = 'pcmm' is not a known device (did you mean 'pcm'?); devices are "
            "ideal, ",
        ),
        (
            "weight_bits = 8",
            "weight_bits = 8\nadc_bits = 4",
            "[defaults] sets 'adc_bits', a hardware option: set it in [xbar]",
        ),
        (
            "weight_bits = 8",
            "weight_bits = true",
            "[defaults]: weight_bits = True must be of type int",
        ),
    ],
)
def test_a_bad_key_in_a_target_file_names_the_key_table_and_file(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path, line = write_target(tmp_path, old, new)
    with pytest.raises(TargetError) as info:
        load_target(str(path))
    assert message in info.value.message
    loc = info.value.loc
    assert isinstance(loc, SourceLoc) and (loc.file, loc.line, loc.col) == (str(path), line, 1)
    assert str(info.value).startswith(f"{path}:{line}:1: target file: ")
    with pytest.raises(TargetError):  # and so does a compile for it: nothing is recorded
        imcc.compile(MODEL, target=str(path))


def test_a_target_file_that_is_not_toml_names_line_and_column(tmp_path: Path) -> None:
    path, line = write_target(tmp_path, "rows = 128", "rows = = 128")
    with pytest.raises(TargetError) as info:
        load_target(str(path))
    assert "invalid TOML (Invalid value" in info.value.message
    assert info.value.loc == SourceLoc(
        str(path), line, 8, EDGE.splitlines()[line - 1].replace("rows = 128", "rows = = 128")
    )


def test_the_defaults_a_target_may_set_are_the_compile_options() -> None:
    assert set(DEFAULTABLE) == set(driver.OPTIONS)


def test_the_device_names_a_target_may_give_are_the_runtime_registry() -> None:
    """isa/presets.py lists them for the compiler without importing the runtime; they must be
    the names the runtime builds."""
    from imcc.runtime.devices import device_kinds

    assert presets.device_kinds() == device_kinds()


# -- the facade's documentation ------------------------------------------------------------------


def test_compile_documents_every_option() -> None:
    doc = inspect.getdoc(imcc.compile) or ""
    parameters = [p for p in inspect.signature(imcc.compile).parameters if p != "options"]
    for name in [*parameters, *driver.OPTIONS, *driver.HARDWARE_OPTIONS]:
        assert re.search(rf"`{name}`", doc), name


# -- comments of the shipped TOML files ----------------------------------------------------------

_CITED = re.compile(r"(?:([\w.-]+/[\w.-]+):\s+)?((?:[\w.-]+/)*[\w-]+\.(?:md|py|toml|txt|json))\b")
TOMLS = sorted(
    [*ROOT.glob("compiler/targets/*.toml"), *ROOT.glob("runtime/devices/presets/*.toml")]
)


@pytest.mark.parametrize("path", TOMLS, ids=lambda p: p.name)
def test_every_file_a_shipped_toml_cites_is_in_the_repository(path: Path) -> None:
    """A file named in a preset's comments is in this repository (or is named with the public
    repository it belongs to, `owner/name: path`); a comment cites a paper, not a file that
    ships with neither the repository nor the wheel."""
    comments = " ".join(
        line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line
    )
    assert "shared/references" not in comments
    missing = []
    for repo, cited in _CITED.findall(comments):
        if repo:
            continue  # in another public repository, which the citation names
        if not any((ROOT / base / cited).exists() for base in ("", path.parent.relative_to(ROOT))):
            missing.append(cited)
    assert not missing, missing


@pytest.mark.parametrize(
    ("option", "expected"),
    [("schedule", "expected one of packed, latency"), ("calibration", "expected minmax")],
)
def test_an_unhashable_closed_set_option_is_a_located_error(option: str, expected: str) -> None:
    """The closed sets are enums; a value that cannot be hashed (a list) still gets the
    option's own message, not a TypeError (found by the long fuzz run)."""
    with pytest.raises(CompileError, match=rf"{option} = \[\]; {expected}") as info:
        imcc.compile(MODEL, **{option: []})
    assert info.value.loc == OptionLoc(option)

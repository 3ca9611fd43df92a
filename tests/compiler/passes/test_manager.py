"""The pass manager: pipeline order, products read before their pass, the `provides`
contract of every Produced field, and pipeline options of every pass."""

from __future__ import annotations

import dataclasses

import pytest

import imcc
from imcc.compiler.ir.cam import CamTrees
from imcc.compiler.ir.core import Op, Produced
from imcc.compiler.ir.ops import OPS, QDense
from imcc.compiler.passes import DEFAULT_PIPELINE, PASSES, parse_pipeline
from imcc.isa.diagnostics import CompileError, NodeLoc
from tests.compiler.passes import golden


def _without(*names: str) -> str:
    return ",".join(p for p in DEFAULT_PIPELINE.split(",") if p not in names)


@pytest.mark.parametrize(
    ("model", "pipeline", "options", "message"),
    [
        (
            "mlp",
            "canonicalize,tile,quantize,bitslice,adc-range,place,acam-map,schedule,emit",
            {},
            r"pass 'tile' needs 'quantize', 'bitslice' to run before it; 'quantize', "
            r"'bitslice' must move before it",
        ),
        ("mlp", _without("bitslice"), {}, r"pass 'tile' needs 'bitslice' to run before it \("),
        ("mlp", _without("quantize"), {}, r"pass 'bitslice' needs 'quantize' to run before it"),
        ("trees", _without("acam-map"), {}, r"pass 'schedule' needs 'acam-map' to run before"),
        (
            "mlp",
            _without("adc-range"),
            {"adc_range": "column"},
            r"pass 'emit' needs 'adc-range' to run before it",
        ),
    ],
    ids=["tile-too-early", "no-bitslice", "no-quantize", "trees-no-acam-map", "no-adc-range"],
)
def test_a_pipeline_out_of_order_is_an_error_naming_the_missing_pass(
    model: str, pipeline: str, options: dict[str, object], message: str
) -> None:
    builder, target = golden.MODELS[model]
    with pytest.raises(CompileError, match=message) as e:
        imcc.compile(builder(), target, pipeline=pipeline, **options)  # type: ignore[arg-type]
    assert f"(the pipeline runs {pipeline.replace(',', ', ')})" in e.value.message


# the QDense products without a default, and the pass that makes each
QDENSE_PRODUCTS = [
    ("slicing", "bitslice"),
    ("tiles", "tile"),
    ("placement", "place"),
    ("core", "schedule"),
]


@pytest.mark.parametrize(("field", "producer"), QDENSE_PRODUCTS)
def test_reading_a_product_before_its_pass_is_an_error_naming_the_pass(
    field: str, producer: str
) -> None:
    op = next(golden.graph_after("mlp", "quantize").walk(QDense))
    with pytest.raises(CompileError, match=f"the '{producer}' pass has not run") as e:
        getattr(op, field)
    assert e.value.loc == NodeLoc(op.name, "QDense")


def test_optional_products_read_as_their_default_before_their_pass() -> None:
    op = next(golden.graph_after("mlp", "quantize").walk(QDense))
    assert op.copies == () and op.adc_ranges is None


def _products() -> list[Produced[object]]:
    classes = {Op, CamTrees, *OPS.values()}
    found = {}
    for cls in classes:
        for klass in cls.__mro__:
            for attr in vars(klass).values():
                if isinstance(attr, Produced):
                    found[(attr.owner, attr.name)] = attr
    return [found[key] for key in sorted(found)]


def test_every_produced_field_is_provided_by_the_pass_it_names() -> None:
    products = _products()
    names = {f"{p.owner}.{p.name}" for p in products}
    assert {"Op.core", "QDense.tiles", "QDense.slicing", "CamTrees.plan"} <= names
    for product in products:
        key = f"{product.owner}.{product.name}"
        assert product.producer in PASSES, f"{key} names unknown pass {product.producer!r}"
        provides = PASSES[product.producer].provides
        assert key in provides, f"{key} is made by {product.producer!r}, which provides {provides}"


def test_every_provided_product_is_a_produced_field_of_that_pass() -> None:
    made = {(p.producer, f"{p.owner}.{p.name}") for p in _products()}
    for name, cls in PASSES.items():
        for product in cls.provides:
            assert product == "program" or (name, product) in made, (name, product)


# a value to write in a pipeline string, and what it parses to, by the field's annotation
_SAMPLES = {
    "bool": [("true", True), ("false", False)],
    "int": [("12", 12)],
    "float": [("97.5", 97.5)],
    "str": [("percentile", "percentile")],
}


def _options() -> list[tuple[str, str]]:
    return [(name, f.name) for name, cls in sorted(PASSES.items()) for f in dataclasses.fields(cls)]


def test_passes_declare_options() -> None:
    assert {("quantize", "weight_bits"), ("place", "spread"), ("adc-range", "percentile")} <= set(
        _options()
    )


@pytest.mark.parametrize(("pass_name", "option"), _options(), ids=lambda v: str(v))
def test_every_option_of_every_pass_parses_from_a_pipeline_string(
    pass_name: str, option: str
) -> None:
    cls = PASSES[pass_name]
    (declared,) = [f for f in dataclasses.fields(cls) if f.name == option]
    kinds = [kind for kind in _SAMPLES if kind in str(declared.type).split(" | ")]
    assert len(kinds) == 1, f"no sample value for option type {declared.type!r}"
    for raw, value in _SAMPLES[kinds[0]]:
        (parsed,) = parse_pipeline(f"canonicalize, {pass_name}{{ {option} = {raw} }}")[1:]
        assert type(parsed) is cls
        assert getattr(parsed, option) == value and type(getattr(parsed, option)) is type(value)
        others = [f.name for f in dataclasses.fields(cls) if f.name != option]
        assert all(getattr(parsed, o) == getattr(cls(), o) for o in others)


def test_an_unknown_option_is_an_error_listing_the_options() -> None:
    with pytest.raises(CompileError, match=r"pass 'place' has no option 'sprad'.*spread"):
        parse_pipeline("place{sprad=true}")

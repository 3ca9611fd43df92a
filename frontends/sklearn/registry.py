"""The scikit-learn converter registries and the context that converters build through.

Sits between the importer (which checks the estimator and makes the graph's input) and
converters.py (one `convert_<estimator>` per class). Two kinds of converter, one registry each:
estimators give the model's named outputs (`label`, `probabilities`, `predict`, ...), and
transformers (the pipeline steps before the final estimator) map the features to new features.
Both are keyed by the exact class: a subclass may change what `predict` means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.isa.diagnostics import CompileError, FrontendError, NodeLoc

# An estimator converter returns its outputs, in order, as (output name, value).
Outputs: TypeAlias = list[tuple[str, Value]]
EstimatorConverter: TypeAlias = Callable[["EstimatorContext", Any, Value], Outputs]
TransformerConverter: TypeAlias = Callable[["EstimatorContext", Any, Value], Value]


@dataclass(frozen=True, slots=True)
class ConverterEntry:
    """One converter for the estimator class `cls`."""

    cls: type
    function: Callable[..., Any]


# Final estimators (classifiers, regressors, Pipeline) -> their converters.
ESTIMATORS: dict[type, ConverterEntry] = {}
# Pipeline steps before the final estimator (scalers) -> their converters.
TRANSFORMERS: dict[type, ConverterEntry] = {}


def _register(
    table: dict[type, ConverterEntry], cls: type
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        if cls in table:
            raise ValueError(f"two converters for {cls.__name__!r}")
        table[cls] = ConverterEntry(cls, function)
        return function

    return register


def estimator(cls: type) -> Callable[[EstimatorConverter], EstimatorConverter]:
    """Register `convert_<estimator>` for the final estimator class `cls`."""
    return _register(ESTIMATORS, cls)


def transformer(cls: type) -> Callable[[TransformerConverter], TransformerConverter]:
    """Register `convert_<transformer>` for the pipeline step class `cls`."""
    return _register(TRANSFORMERS, cls)


def supported_estimators() -> tuple[str, ...]:
    """Class names of the supported final estimators, sorted."""
    return tuple(sorted(cls.__name__ for cls in ESTIMATORS))


def supported_transformers() -> tuple[str, ...]:
    """Class names of the supported pipeline steps before the final estimator, sorted."""
    return tuple(sorted(cls.__name__ for cls in TRANSFORMERS))


def qualified_name(cls: type) -> str:
    """The public import path of a class: 'sklearn.ensemble.RandomForestClassifier'."""
    module = cls.__module__
    if module.startswith("sklearn."):
        # sklearn.linear_model._logistic -> sklearn.linear_model, where users import it from.
        module = ".".join(part for part in module.split(".") if not part.startswith("_"))
    return f"{module}.{cls.__qualname__}"


def step_loc(name: str, step: Any) -> NodeLoc:
    """A step's location: its pipeline step name (or, alone, make_pipeline's lowercase name)."""
    return NodeLoc(name, type(step).__name__)


def lookup_estimator(step: Any, loc: NodeLoc) -> ConverterEntry:
    entry = ESTIMATORS.get(type(step))
    if entry is None:
        raise FrontendError(
            f"unsupported estimator {type(step).__name__!r} ({qualified_name(type(step))}); "
            f"supported estimators: {', '.join(supported_estimators())}",
            loc,
        )
    return entry


def lookup_transformer(step: Any, loc: NodeLoc) -> ConverterEntry:
    entry = TRANSFORMERS.get(type(step))
    if entry is None:
        raise FrontendError(
            f"unsupported pipeline step {type(step).__name__!r} "
            f"({qualified_name(type(step))}) before the final estimator; supported steps: "
            f"{', '.join(supported_transformers())}",
            loc,
        )
    return entry


def check_fitted(step: Any, loc: NodeLoc) -> None:
    """A clear error for an estimator that has not been fitted (scikit-learn's own test)."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(step)
    except NotFittedError:
        name = type(step).__name__
        raise FrontendError(
            f"{name!r} is not fitted: call its fit(X, y) before compiling it", loc
        ) from None
    except TypeError as exc:  # check_is_fitted's answer for objects that are no estimators
        raise FrontendError(f"{type(step).__name__!r} is not an estimator: {exc}", loc) from None


class EstimatorContext:
    """What a converter sees: the graph under construction and where it is (a pipeline step).

    Converters turn fitted parameters into constants and IR ops; `loc` names the step in errors
    and in the ops it makes, so the compiler's reports point back at the estimator.
    """

    def __init__(self, graph: Graph, loc: NodeLoc, op_names: set[str] | None = None) -> None:
        self.graph = graph
        self.loc = loc
        # Op names are unique over the graph: `quantize` keys calibration ranges by op name.
        self._op_names = op_names if op_names is not None else set()

    def at(self, loc: NodeLoc) -> EstimatorContext:
        """The same graph, seen from another step."""
        return EstimatorContext(self.graph, loc, self._op_names)

    def error(self, message: str) -> FrontendError:
        return FrontendError(message, self.loc)

    # -- building ---------------------------------------------------------------------------
    def constant(self, hint: str, array: Any, dtype: Any = None) -> Value:
        values = np.array(array, dtype=dtype)  # a copy: a later refit must not change the graph
        return self.graph.add_constant(f"{self.loc.node}.{hint}", values)

    def emit(
        self,
        op_class: type[Op],
        inputs: list[Value],
        *,
        name: str = "",
        hint: str = "",
        **attrs: Any,
    ) -> Value:
        """Append one single-result op named `<step>.<hint>`; `name` names its result (an output
        of the model), else the result takes the op's name."""
        base = f"{self.loc.node}.{hint or op_class.kind.lower()}"
        op_name, n = base, 1
        while op_name in self._op_names:
            op_name, n = f"{base}.{n}", n + 1
        self._op_names.add(op_name)
        try:
            return self.graph.build(op_class(inputs, name=op_name, **attrs), name or op_name)
        except CompileError as exc:
            raise self.error(exc.message) from None

    def dense(
        self,
        x: Value,
        weight: np.ndarray,
        bias: np.ndarray,
        *,
        activation: str = "none",
        name: str = "",
        hint: str = "dense",
    ) -> Value:
        """y = activation(x @ weight + bias): the crossbar form, with weight (K, N)."""
        w = np.ascontiguousarray(weight)
        if w.ndim != 2 or w.shape[0] != x.shape[-1]:
            raise self.error(
                f"a weight of shape {w.shape} does not fit {x.shape[-1]} input features"
            )
        b = np.ascontiguousarray(np.broadcast_to(bias, (w.shape[1],)))
        inputs = [x, self.constant(f"{hint}.weight", w), self.constant(f"{hint}.bias", b)]
        return self.emit(ops.Dense, inputs, name=name, hint=hint, activation=activation)

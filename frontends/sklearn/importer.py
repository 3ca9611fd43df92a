"""scikit-learn estimator -> graph IR: the first step of the pipeline for a fitted estimator.

Takes a fitted estimator (a classifier, a regressor, or a Pipeline of scalers ending in one);
checks it is supported and fitted; gives a verified `Graph` with one float input `X` of shape
(1, n_features) (the leading axis is the batch) and the estimator's outputs, named as in
scikit-learn: `label` (an index into graph.meta["classes"]), `probabilities`,
`decision_function`, or `predict` for regressors. Every problem is a FrontendError.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, TensorType
from imcc.isa.diagnostics import CompileError, FrontendError

from . import converters as _converters  # noqa: F401  (registers converters)
from . import trees as _trees  # noqa: F401  (registers the tree-model converters)
from .registry import EstimatorContext, check_fitted, lookup_estimator, step_loc

log = logging.getLogger(__name__)

INPUT_NAME = "X"


def import_sklearn(estimator: Any) -> Graph:
    """Import a fitted scikit-learn estimator as a verified graph IR."""
    if isinstance(estimator, type):
        raise FrontendError(
            f"expected a fitted estimator, not the class {estimator.__name__!r}; "
            "create one, fit it, then compile it"
        )
    loc = step_loc(type(estimator).__name__.lower(), estimator)
    entry = lookup_estimator(estimator, loc)
    check_fitted(estimator, loc)
    n_features = _n_features(estimator)
    if not isinstance(n_features, int | np.integer) or n_features < 1:
        raise FrontendError(
            f"{type(estimator).__name__!r} does not say how many features it takes "
            "(no n_features_in_); fit it on a 2-D array",
            loc,
        )
    graph = Graph(type(estimator).__name__)
    graph.batch_axis = True
    x = graph.add_input(INPUT_NAME, TensorType((1, int(n_features)), _input_dtype(estimator)))
    outputs = entry.function(EstimatorContext(graph, loc), estimator, x)
    for name, value in outputs:
        if value.name != name:
            # A converter handed back a value named otherwise; give the output its own name.
            value = graph.build(ops.Identity([value], name=name), name)
        graph.outputs.append(value)
    graph.output_names = [name for name, _ in outputs]
    graph.remove_dead()
    try:
        graph.verify()
    except CompileError as exc:
        raise FrontendError(f"internal error: the imported graph is invalid: {exc}") from None
    log.debug("imported %s:\n%s", graph.name, graph.dump())
    return graph


def _n_features(estimator: Any) -> Any:
    """n_features_in_, or for a Pipeline that of its first step that is no 'passthrough'
    (Pipeline.n_features_in_ asks the first step, whatever it is)."""
    for _, step in getattr(estimator, "steps", ()):
        if step is not None and not isinstance(step, str):
            return _n_features(step)
    return getattr(estimator, "n_features_in_", None)


def _input_dtype(estimator: Any) -> str:
    """The element type the estimator computes in: that of its weights (scikit-learn keeps
    float32 weights when fitted on float32 data), float64 otherwise."""
    final = estimator
    while hasattr(final, "steps"):
        final = final.steps[-1][1]
    for attr in ("coefs_", "coef_"):
        weights = getattr(final, attr, None)
        if isinstance(weights, list) and weights:
            weights = weights[0]
        if isinstance(weights, np.ndarray) and weights.dtype == np.float32:
            return "float32"
    return "float64"

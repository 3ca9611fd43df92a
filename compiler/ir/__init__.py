"""The graph IR: values, ops, graphs, and a numpy interpreter for them."""

from imcc.compiler.ir.core import Graph, Op, TensorType, Value

__all__ = ["Graph", "Op", "TensorType", "Value"]

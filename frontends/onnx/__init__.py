"""The ONNX frontend: `import_onnx(model) -> Graph`, and the converter registry behind it."""

from .importer import import_onnx, node_loc
from .registry import (
    CONVERTERS,
    ConverterEntry,
    NodeContext,
    converter,
    supported_op_types,
)

__all__ = [
    "CONVERTERS",
    "ConverterEntry",
    "NodeContext",
    "converter",
    "import_onnx",
    "node_loc",
    "supported_op_types",
]

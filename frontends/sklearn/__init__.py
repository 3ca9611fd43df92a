"""The scikit-learn frontend: `import_sklearn(estimator) -> Graph`, and the converter
registries behind it (final estimators, and the scalers a Pipeline may put before them)."""

from .importer import INPUT_NAME, import_sklearn
from .registry import (
    ESTIMATORS,
    TRANSFORMERS,
    ConverterEntry,
    EstimatorContext,
    estimator,
    supported_estimators,
    supported_transformers,
    transformer,
)

__all__ = [
    "ESTIMATORS",
    "INPUT_NAME",
    "TRANSFORMERS",
    "ConverterEntry",
    "EstimatorContext",
    "estimator",
    "import_sklearn",
    "supported_estimators",
    "supported_transformers",
    "transformer",
]

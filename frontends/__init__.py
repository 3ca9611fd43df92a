"""Frontends: trained models -> graph IR (compiler/ir).

`imcc.frontends.onnx` reads ONNX (with the ONNX-ML linear ops skl2onnx emits);
`imcc.frontends.sklearn` imports fitted scikit-learn estimators natively.
"""

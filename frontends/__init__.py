"""Frontends: trained models -> graph IR (compiler/ir). `imcc.frontends.onnx` reads ONNX."""

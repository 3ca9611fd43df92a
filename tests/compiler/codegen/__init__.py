"""Tests of compiler/codegen/, one module per lowering module."""

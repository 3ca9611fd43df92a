"""imcc.tools: what ships beside the public API but is no part of it: the `imcc bench` and
`imcc demo` modules, report plots, and the reference CNN builder (zoo) the tests and bench use.
Only the CLI (imcc/cli.py), the examples and the tests import it; the library never does.
"""

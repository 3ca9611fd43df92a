"""Code generation: the scheduled graph -> isa.Program.

emitter.py holds the services (each core's code and buffer, global memory, values and their
copies, transfers, the Program's sections) and the registry of lowerings; every other module
lowers one family of IR ops, each function registered for its op classes by @lowers. Importing
this package registers them all.
"""

from imcc.compiler.codegen import (  # noqa: F401  (registers the lowerings)
    convolution,
    dense,
    elementwise,
    matmul,
    movement,
    reductions,
    trees,
)

"""IR drop on the array's wires: a fast first-order model and an exact nodal solve.

The circuit (both models): row r is driven at its left end, through one wire segment, by its
input voltage V_r; column c is held at virtual ground at its bottom end, below the last row,
through one segment; neighbouring cells are one segment (resistance r, Ohm) apart on both
lines; cell (r, c) is a conductance g_rc between its row node and its column node. A read is
linear in the inputs, so either model reduces to an effective conductance matrix G_eff with
column currents I = G_eff^T V: computed once per programmed array and time, then every read is
one matmul. Conductances are in uS throughout.

Fast model. Take the ideal currents i = g V, let them flow through the wires, and charge each
cell with the voltage it loses: the row wire drops r sum_c'' i_rc'' (min(c, c'') + 1) before
cell (r, c) and the column wire rises r sum_r'' i_r''c (R - max(r, r'')) under it. Per unit
input that is a dimensionless load l_rc = r (G M + N G)_rc with M = min(c, c'') + 1 and
N = R - max(r, r''). First order in r, g_eff = g (1 - l); we use g / (1 + l), equal to first
order and exact for one cell behind a series resistance, which keeps strong drop bounded
(tested against the exact solve). Two small matmuls per array.

Exact model: Kirchhoff's current law at all 2 R C nodes, one sparse LU factorisation per array
and time (scipy), solved for each unit input row. For small arrays and for validating the fast
model; CrossSim solves the same circuit iteratively.
"""

from __future__ import annotations

import numpy as np

from imcc.isa.diagnostics import SimulationError

IR_DROP_MODES = ("fast", "exact", "off")
SIEMENS_PER_US = 1e-6


def ir_drop_load(g_us: np.ndarray, wire_ohm: float) -> np.ndarray:
    """The dimensionless first-order load l_rc of every cell (see the module docstring).

    (G M)_rc sums, over the row segments between the driver and cell c, the conductance
    downstream of each segment; (N G)_rc sums, over the column segments between cell r and
    ground, the conductance upstream of each. Running sums give both in O(rows x cols), with
    no small matmuls (which multithreaded BLAS runs slowly)."""
    g = g_us * SIEMENS_PER_US
    downstream = np.cumsum(g[:, ::-1], axis=1)[:, ::-1]  # row segment k carries cells c'' >= k
    along_row = np.cumsum(downstream, axis=1)  # segments 0..c lie between driver and cell c
    upstream = np.cumsum(g, axis=0)  # column segment below row s carries rows r'' <= s
    along_col = np.cumsum(upstream[::-1], axis=0)[::-1]  # segments r..R-1 lie below cell r
    load: np.ndarray = wire_ohm * (along_row + along_col)
    return load


def ir_drop_fast(g_us: np.ndarray, wire_ohm: float) -> np.ndarray:
    """Effective conductances (uS) under IR drop, first-order with a series-resistance closure."""
    if wire_ohm == 0:
        return g_us
    result: np.ndarray = g_us / (1.0 + ir_drop_load(g_us, wire_ohm))
    return result


def ir_drop_exact(g_us: np.ndarray, wire_ohm: float) -> np.ndarray:
    """Effective conductances (uS) from the nodal solve of the whole array."""
    if wire_ohm == 0:
        return g_us
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import splu
    except ImportError:
        raise SimulationError(
            "the exact IR-drop solver needs scipy (pip install scipy); use ir_drop='fast'"
        ) from None
    rows, cols = g_us.shape
    g = g_us * SIEMENS_PER_US
    w = 1.0 / wire_ohm
    n = rows * cols
    index = np.arange(n).reshape(rows, cols)
    row_node = index  # node numbers of the row-wire nodes
    col_node = index + n  # and of the column-wire nodes
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def couple(a: np.ndarray, b: np.ndarray, conductance: np.ndarray | float) -> None:
        """A conductance between nodes a and b: +g on both diagonals, -g off them."""
        value = np.broadcast_to(np.asarray(conductance, dtype=np.float64), a.shape).ravel()
        a, b = a.ravel(), b.ravel()
        entries.extend([(a, a, value), (b, b, value), (a, b, -value), (b, a, -value)])

    couple(row_node, col_node, g)  # the cells
    couple(row_node[:, :-1], row_node[:, 1:], w)  # row wire segments between cells
    couple(col_node[:-1, :], col_node[1:, :], w)  # column wire segments between cells
    # the driver segment of each row and the ground segment of each column: to fixed voltages
    drivers, grounds = row_node[:, 0], col_node[-1, :]
    entries.append((drivers, drivers, np.full(rows, w)))
    entries.append((grounds, grounds, np.full(cols, w)))
    i, j, v = (np.concatenate(parts) for parts in zip(*entries, strict=True))
    system = coo_matrix((v, (i, j)), shape=(2 * n, 2 * n)).tocsc()
    rhs = np.zeros((2 * n, rows))
    rhs[drivers, np.arange(rows)] = w  # one unit input voltage per right-hand side
    voltages = splu(system).solve(rhs)
    # current into the virtual ground of column c, per unit input on row r
    g_eff = w * voltages[grounds, :].T
    result: np.ndarray = g_eff / SIEMENS_PER_US
    return result


def effective_conductance(g_us: np.ndarray, wire_ohm: float, mode: str) -> np.ndarray:
    if mode == "off" or wire_ohm == 0:
        return g_us
    if mode == "fast":
        return ir_drop_fast(g_us, wire_ohm)
    if mode == "exact":
        return ir_drop_exact(g_us, wire_ohm)
    raise SimulationError(f"unknown IR-drop mode {mode!r}; modes are {', '.join(IR_DROP_MODES)}")

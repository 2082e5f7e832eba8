"""A hidden node programmed to have no conductance at all floats: the solve is refused, and the
message names the cause instead of only 'KKT certificate inf' (without a singular-matrix warning
from the factorisation on top of it)."""

import numpy as np
import pytest

from hil.boards.simulated import SimulatedBoard
from hil.circuit.generate import random_circuit
from hil.circuit.report import SolveError


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("degree", [0, 2])
def test_a_floating_node_is_refused_with_its_cause(degree):
    c = random_circuit(4, 2, 2, seed=0, coupling_degree=degree)
    board = SimulatedBoard(c)
    g, topo, p = c.conductance_vector().copy(), c.topology(), c.n_sources
    g[(topo.edges[:, 0] == p) | (topo.edges[:, 1] == p)] = 0.0  # every conductance of node h0
    board.program(g, rel_tol=0.0)
    with pytest.raises(SolveError, match="floats and has no unique equilibrium"):
        board.measure(np.ones((1, 2)))

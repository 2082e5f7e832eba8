"""A config whose initial conductances lie outside [board.g_min, board.g_max] builds a board that holds
them clipped to the range, whatever the backend: the non-ideal board and the trainer's first step
already clipped them, while the ideal simulated board and the cascade kept values the board cannot
hold (42 of sim-xor's 88 conductances above g_max = 50 µS), so hil.api.measure and gradient saw
another network than the one training starts from."""

import numpy as np
import pytest

import hil.api as api


@pytest.mark.parametrize("name, overrides", [("sim-xor", ["board.g_max=5e-5"]), ("sim-xor", ["board.g_min=2e-5"]),
                                             ("sim-xor-cascade", ["board.g_max=5e-5"]),
                                             ("sim-xor", ["board.g_max=5e-5", "board.devices={dtod: {g_dtod_std: 0.0}}"])])
def test_initial_conductances_are_held_inside_the_range(name, overrides):
    cfg = api.load_config(name, overrides)
    board = api.build_board(cfg)
    g_min, g_max = board.conductance_bounds
    g = board.read_conductances()
    assert g.min() >= g_min and g.max() <= g_max
    raw = api.load_config(name)
    unclipped = api.build_board(raw).read_conductances()
    assert np.array_equal(g, np.clip(unclipped, g_min, g_max))
    assert np.all(np.isfinite(api.measure(board, [[0.0, 1.0]]).y))

"""Write-verify programming of resistive devices through a matrix and pulsed SMU (in-process bench)."""

import numpy as np
import pytest

from hil.bench.resistive import ResistiveDeviceModel
from hil.board import ProgramResult
from hil.boards.programmers import WriteVerifyProgrammer, WriteVerifySettings
from hil.drivers.errors import LimitViolation
from hil.drivers.limits import SourceLimits
from tests.boards.conftest import make_boards

PROG_LIMITS = SourceLimits(v_min=-1.6, v_max=1.6, i_compliance_a=1e-3, max_step_v=1.6, max_slew_v_per_s=1e5)


def programmer_factory(stuck=None, settings=None):
    def make(bench, circuit):
        m = circuit.conductance_vector().size
        devices = [[("R", k)] for k in range(m)]  # one selecting crosspoint per device (test layout)
        model = ResistiveDeviceModel(0.5e-8, 1.3e-4, stuck=stuck, seed=1)  # device range beyond the board's
        bench.add_programming(devices, model, PROG_LIMITS, read_noise_rel=1e-4)
        return WriteVerifyProgrammer(bench.instruments["prog"], "a", bench.instruments["matrix"], devices,
                                     settings or WriteVerifySettings(rel_tol=0.02, abs_tol_s=2e-8, max_pulses=60), (1e-8, 1e-4))
    return make


def test_write_verify_reaches_targets_and_reports_per_device():
    board, sim, bench = make_boards(programmer=programmer_factory())
    g0 = board.read_conductances()
    np.testing.assert_allclose(g0, sim.read_conductances(), rtol=1e-3)
    rng = np.random.default_rng(0)
    target = np.clip(g0 * rng.uniform(0.6, 1.5, g0.size), 1e-8, 1e-4)
    res = board.program(target, rel_tol=0.02)
    assert isinstance(res, ProgramResult)
    ok = res.converged
    assert ok.mean() >= 0.95, res.summary()
    # what did not converge ran out of its pulse budget (slow depression near g_min) and says so
    assert np.all(res.pulses[~ok] == 60) and not res.stuck[~ok].any()
    assert np.all(np.abs(res.achieved - res.target)[ok] <= 0.021 * res.target[ok] + 2e-8)  # read noise 1e-4
    assert res.pulses.sum() > 0
    # the emulated array holds what the programmer reported
    np.testing.assert_allclose(bench.world.circuit.conductance_vector(), res.achieved, rtol=2e-3)
    # never a relay change with a live source, every pulse within the channel limits
    assert bench.instruments["matrix"].hot_switches == []
    assert max(abs(a) for _, a, _ in bench.instruments["prog"].pulses) <= PROG_LIMITS.v_max
    # devices already within tolerance are not touched again
    again = board.program(res.achieved, rel_tol=0.02)
    assert again.pulses.sum() == 0
    board.close()


def test_stuck_devices_are_reported():
    m = 6 * 4 + 4 * 4 + 4  # g_in (4 hidden × 6 sources), g_leak, g_out of the test circuit
    stuck = np.zeros(m, bool)
    stuck[[0, 5]] = True
    board, sim, bench = make_boards(programmer=programmer_factory(stuck=stuck))
    g0 = board.read_conductances()
    target = np.clip(g0 * 1.3, 1e-8, 1e-4)
    res = board.program(target, rel_tol=0.02)
    assert res.stuck[0] and res.stuck[5]
    assert not res.converged[0] and res.summary()["stuck"] >= 2
    board.close()


def test_pulse_beyond_limits_is_refused_before_any_change():
    settings = WriteVerifySettings(set_v=1.0, reset_v=-1.0, v_max=2.0, v_step=0.5)
    board, _, bench = make_boards(programmer=programmer_factory(settings=settings))
    g0 = board.read_conductances()
    with pytest.raises(LimitViolation):
        board.program(np.clip(g0 * 3, 1e-8, 1e-4), rel_tol=1e-4)  # grows the amplitude beyond v_max of the channel
    assert bench.all_outputs_off_at_zero()
    assert max(abs(a) for _, a, _ in bench.instruments["prog"].pulses) <= PROG_LIMITS.v_max


def test_settings_validation():
    with pytest.raises(ValueError, match="v_read"):
        WriteVerifySettings(v_read=1.2, set_v=1.0)

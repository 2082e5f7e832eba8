"""The board protocol and the emulated bench used as a library: a simulated board driven directly,
and a user's own test suite using the pytest plugin as docs/emulator.md describes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import hil.api as api
from hil.board import Board
from hil.boards.simulated import SimulatedBoard

ROOT = Path(__file__).resolve().parent.parent


def test_a_simulated_board_refuses_a_3d_batch_with_its_shape():
    """A (2, 2, 2) batch whose second axis happens to equal n_inputs used to reach numba (a
    TypingError page about ``iadd(float64, array)``)."""
    board = SimulatedBoard(api.build_circuit("sim-xor"), g_min=1e-6, g_max=1e-4)
    assert isinstance(board, Board)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 2\) in V, got shape \(2, 2, 2\)"):
        board.measure(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 2\) in V, got shape \(1, 3\)"):
        board.measure(np.zeros((1, 3)))
    assert board.measure(np.zeros((3, 2))).y.shape == (3, 4)


USER_SUITE = '''
    import pytest
    from hil.bench.instruments import make_driver


    @pytest.mark.hil_bench("benches/my-bench.yaml", time_mode="virtual")
    def test_documented_example(emulated_bench, visa_resource_managers):
        loop = emulated_bench.loopback_bench
        with make_driver(loop.instruments["smu_x"], visa_resource_managers) as smu:
            smu.output("1", True)
            smu.set_voltage("1", 0.2)
        assert emulated_bench.all_outputs_safe()
        assert emulated_bench.clock.mode == "virtual"


    @pytest.mark.hil_bench(time_mode="virtual", seed=7)
    def test_marker_settings_apply_to_the_command_line_bench(emulated_bench):
        assert emulated_bench.bench.name == "scpi-xor"
        assert emulated_bench.clock.mode == "virtual"


    @pytest.mark.hil_bench(bench="benches/my-bench.yaml")
    def test_bench_given_by_keyword(emulated_bench):
        assert emulated_bench.bench.name == "my-bench"


    def test_factory_benches_are_independent(emulated_bench_factory):
        a = emulated_bench_factory("benches/my-bench.yaml", time_mode="virtual", seed=1)
        b = emulated_bench_factory("scpi-xor")
        assert a.resources["daq"] != b.resources["daq"]
'''


def test_a_user_suite_with_the_pytest_plugin_runs_as_documented(tmp_path):
    """The fixtures as docs/emulator.md shows them, in a project of the user's own (run from a
    sub-directory, so the marker's relative bench path is the project's). A marker with settings
    but no bench used to be ignored in full (bench from --hil-bench in instant mode), and
    ``bench=`` as a keyword was a TypeError."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["hil.emulate.pytest_plugin"]\n')
    (tmp_path / "benches").mkdir()
    text = (ROOT / "configs" / "benches" / "scpi-xor.yaml").read_text()
    (tmp_path / "benches" / "my-bench.yaml").write_text(text.replace("name: scpi-xor", "name: my-bench", 1))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_my_bench.py").write_text(textwrap.dedent(USER_SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hil-bench", "scpi-xor",
                           "test_my_bench.py"], cwd=tmp_path / "tests", env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout


def test_the_emulated_bench_example_of_the_emulator_page_runs(capsys):
    """docs/emulator.md's "In Python" block, exactly as written."""
    page = (ROOT / "docs" / "emulator.md").read_text()
    code = next(b.split("```")[0] for b in page.split("```python")[1:] if "with EmulatedBench(" in b)
    exec(compile(code, "<emulator.md example>", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and float(lines[1]) > 0 and float(lines[2]) > 0  # node voltage (V), bench time (s)


@pytest.mark.parametrize("word", ["off", "OFF", "0", None, 0.5])
def test_a_source_meter_refuses_an_output_state_that_is_not_a_bool(word):
    """``smu.output("1", "off")`` used to switch the output ON (a non-empty string is true); checked
    from the emulated instrument's own state."""
    from hil.bench.instruments import make_driver
    from hil.drivers.transport import ResourceManagers
    from hil.emulate.bench import EmulatedBench

    with EmulatedBench("scpi-xor") as bench, ResourceManagers() as rms:
        with make_driver(bench.loopback_bench.instruments["smu_x"], rms) as smu:
            with pytest.raises(TypeError, match=r"smu_x: output state of channel '1': expected True or False"):
                smu.output("1", word)
            bench.settle()
            assert not bench.output_states()["smu_x.1"]["output_on"]
            smu.output("1", np.True_)  # numpy booleans and 0/1 are fine
            smu.output("1", 0)
        bench.settle()
        assert bench.all_outputs_safe()


def test_an_emulated_bench_used_before_start_says_how_to_start_it():
    """It used to raise a bare ``RuntimeError: server not started`` from a server module."""
    from hil.emulate.bench import EmulatedBench

    bench = EmulatedBench("scpi-xor")
    for view in ("resources", "loopback_bench"):
        with pytest.raises(RuntimeError, match=r"EmulatedBench 'scpi-xor' is not started .*with EmulatedBench"):
            getattr(bench, view)
    with bench:
        assert set(bench.resources) == set(bench.loopback_bench.instruments)

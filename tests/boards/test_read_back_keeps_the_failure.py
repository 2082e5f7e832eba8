"""A failure inside a run (an instrument fault, Ctrl-C) leaves as itself, with the outputs read back
(``unverified``), also when making the bench safe or reading it back fails as well: the command
line then names the original cause and what the instruments answered."""

import pytest

from hil.api import outputs_read_back
from hil.cli import _instrument_message, _interrupt_message, _outputs_state
from hil.drivers.errors import InstrumentError

from .conftest import break_off_shutdown, make_boards


def _bench():
    board, _, bench = make_boards()
    board.connect()
    smu = next(inst for inst in bench.instruments.values() if hasattr(inst, "output_enabled"))
    return board, smu


def test_a_failing_read_back_does_not_replace_the_fault():
    board, _ = _bench()

    def broken():
        raise RuntimeError("scanner driver bug")

    board.verify_safe = broken
    with pytest.raises(RuntimeError, match="SMU compliance fault") as info:
        with outputs_read_back(board):
            raise RuntimeError("SMU compliance fault")
    assert info.value.unverified == [f"{name}: not verified (read-back failed: scanner driver bug)"
                                     for name in board.instruments]
    board.close()


def test_a_failing_safe_state_is_recorded_and_the_outputs_are_still_read_back():
    """The safe state fails with an output left on: the fault leaves, it records how the shutdown
    failed, and the read-back (what the emulated SMU answers) names that channel."""
    board, smu = _bench()
    channel = smu.channels[0]
    # the shutdown broke off before this output was switched off
    real_safe_state = break_off_shutdown(board, RuntimeError("ramp aborted"), (smu, channel))
    with pytest.raises(RuntimeError, match="SMU compliance fault") as info:
        with outputs_read_back(board):
            raise RuntimeError("SMU compliance fault")
    exc = info.value
    assert len(exc.unverified) == 1 and exc.unverified[0].startswith(f"{smu.name}.{channel}")
    assert exc.shutdown_trouble == "RuntimeError: ramp aborted"
    assert _outputs_state(exc.unverified, exc.shutdown_trouble).startswith(
        f"safe shutdown failed (RuntimeError: ramp aborted), CHECK THE BENCH: outputs not verified off: "
        f"{smu.name}.{channel}")
    board.safe_state = real_safe_state
    board.close()
    assert not smu._on[channel]  # the closing shutdown switched it off


def test_a_second_signal_during_the_read_back_keeps_the_first():
    board, _ = _bench()

    def interrupted():
        raise KeyboardInterrupt

    board.verify_safe = interrupted
    with pytest.raises(KeyboardInterrupt) as info:
        with outputs_read_back(board):
            raise KeyboardInterrupt("first")
    assert info.value.args == ("first",)
    assert info.value.unverified == [f"{name}: not verified (interrupted)" for name in board.instruments]
    board.close()


def test_a_failing_closing_shutdown_keeps_the_fault_in_flight():
    """As hil.api runs it (``with board:`` around the run): the closing shutdown fails as well; the
    fault still leaves, with what the later read-back found and how the shutdown failed, and the
    transports are released."""
    board, smu = _bench()
    channel = smu.channels[0]
    break_off_shutdown(board, RuntimeError("ramp aborted"), (smu, channel))
    with pytest.raises(InstrumentError, match="SMU compliance fault") as info:
        with board:
            with outputs_read_back(board):
                raise InstrumentError("SMU compliance fault")
    exc = info.value
    assert exc.shutdown_trouble == "RuntimeError: ramp aborted"
    assert len(exc.unverified) == 1 and exc.unverified[0].startswith(f"{smu.name}.{channel}")
    line = _instrument_message(exc)
    assert line.startswith("instrument fault: InstrumentError: SMU compliance fault; safe shutdown failed "
                           "(RuntimeError: ramp aborted), CHECK THE BENCH"), line
    assert all(not inst.connected for inst in board.instruments.values())


def test_a_signal_during_the_runs_shutdown_is_said():
    """A Ctrl-C held during the shutdown after a fault: the fault leaves (it stopped the run), and the
    line says a signal came during the shutdown; the outputs read back off."""
    board, _ = _bench()
    real_safe_state = break_off_shutdown(board)  # as the handler of a held SIGINT raises at its end
    with pytest.raises(InstrumentError) as info:
        with outputs_read_back(board):
            raise InstrumentError("smu0: timeout")
    assert info.value.shutdown_trouble == "interrupted" and info.value.unverified == []
    assert _instrument_message(info.value).endswith(
        "safe shutdown ran (a Ctrl-C or SIGTERM came during it), every output read back off")
    board.safe_state = real_safe_state
    board.close()


def test_a_signal_held_through_the_shutdown_after_ctrl_c_keeps_exit_130_wording():
    board, _ = _bench()
    real_safe_state = break_off_shutdown(board)
    with pytest.raises(KeyboardInterrupt) as info:
        with outputs_read_back(board):
            raise KeyboardInterrupt("first")
    assert info.value.args == ("first",)
    assert _interrupt_message(info.value) == ("interrupted; safe shutdown ran (a Ctrl-C or SIGTERM came during "
                                              "it), every output read back off")
    board.safe_state = real_safe_state
    board.close()

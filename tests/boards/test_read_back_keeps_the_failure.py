"""A failure inside a run (an instrument fault, Ctrl-C) leaves as itself, with the outputs read back
(``unverified``), also when making the bench safe or reading it back fails as well: the command
line then names the original cause and what the instruments answered."""

import pytest

from hil.api import outputs_read_back

from .conftest import make_boards


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


def test_a_failing_safe_state_is_noted_and_the_outputs_are_still_read_back():
    """The safe state fails with an output left on: the fault leaves, the note says the safe state
    failed, and the read-back (what the emulated SMU answers) names that channel."""
    board, smu = _bench()
    channel = smu.channels[0]

    real_safe_state = board.safe_state

    def failing_safe_state():
        real_safe_state()
        smu._on[channel] = True  # the shutdown broke off before this output was switched off
        raise RuntimeError("ramp aborted")

    board.safe_state = failing_safe_state
    with pytest.raises(RuntimeError, match="SMU compliance fault") as info:
        with outputs_read_back(board):
            raise RuntimeError("SMU compliance fault")
    exc = info.value
    assert len(exc.unverified) == 1 and exc.unverified[0].startswith(f"{smu.name}.{channel}")
    assert any("ramp aborted" in note for note in exc.__notes__)
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

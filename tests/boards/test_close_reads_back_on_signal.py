"""A Ctrl-C or SIGTERM held during a bench's closing shutdown leaves with the outputs read back
(``unverified``), so the command line reports what the instruments answered instead of assuming
the safe state; the transports are released afterwards all the same."""

import pytest

from hil.cli import _interrupt_message

from .conftest import break_off_shutdown, make_boards


@pytest.mark.parametrize("stuck", [False, True])
def test_a_signal_held_during_close_leaves_with_the_outputs_read_back(stuck):
    board, _, bench = make_boards()
    board.connect()
    smu = next(inst for inst in bench.instruments.values() if hasattr(inst, "output_enabled"))
    break_off_shutdown(board, leave_on=(smu, smu.channels[0]) if stuck else None)
    with pytest.raises(KeyboardInterrupt) as info:
        board.close()
    unverified = info.value.unverified
    if stuck:
        assert len(unverified) == 1 and unverified[0].startswith(f"{smu.name}.{smu.channels[0]}")
        assert "CHECK THE BENCH" in _interrupt_message(info.value)
    else:
        assert unverified == [] and "every output read back off" in _interrupt_message(info.value)
    assert all(not inst.connected for inst in bench.instruments.values())  # released after the read-back


def test_a_failing_read_back_does_not_replace_the_signal():
    """The interrupt still leaves ``close`` (the command stops as asked), every instrument listed as
    not verified, when the read-back itself fails; the transports are released all the same."""
    board, _, bench = make_boards()
    board.connect()
    break_off_shutdown(board)

    def broken():
        raise RuntimeError("scanner driver bug")

    board.verify_safe = broken
    with pytest.raises(KeyboardInterrupt) as info:
        board.close()
    assert info.value.unverified == [f"{name}: not verified (read-back failed: scanner driver bug)"
                                     for name in board.instruments]
    assert all(not inst.connected for inst in bench.instruments.values())

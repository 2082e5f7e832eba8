"""A Ctrl-C or SIGTERM that arrives while numba compiles (its compiler lock held) waits until the compile
is done; at any other moment it is handled at once."""

import signal

import pytest
from numba.core import event

from hil.compile_signals import compiling, signals_wait_for_compiles


class Stop(Exception):
    pass


@pytest.fixture
def recorded():
    """SIGINT and SIGTERM handlers that record and raise ``Stop``; the originals restored afterwards."""
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        raise Stop(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield calls
    for sig, h in old.items():
        signal.signal(sig, h)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_compile_is_handled_when_the_compile_ends(recorded, sig):
    with signals_wait_for_compiles():
        event.start_event("numba:compiler_lock")  # what numba's lock announces when taken …
        event.start_event("numba:compiler_lock")  # … and taken again (it is re-entrant)
        assert compiling()
        signal.raise_signal(sig)
        signal.raise_signal(sig)  # a second one during the same compile adds nothing
        sum(range(1000))  # (the interpreter checks for signals between bytecodes)
        assert recorded == []
        event.end_event("numba:compiler_lock")
        sum(range(1000))
        assert recorded == []  # still inside the outer hold
        with pytest.raises(Stop):
            event.end_event("numba:compiler_lock")  # released: the held signal now reaches the handler
            sum(range(1000))
    assert recorded == [sig] and not compiling()


def test_a_signal_outside_a_compile_is_handled_at_once_and_the_handlers_come_back(recorded):
    before = signal.getsignal(signal.SIGINT)
    with signals_wait_for_compiles():
        with pytest.raises(Stop):
            signal.raise_signal(signal.SIGINT)
            sum(range(1000))
    assert recorded == [signal.SIGINT] and signal.getsignal(signal.SIGINT) is before


def test_a_real_first_compile_keeps_a_signal_raised_inside_it_until_it_is_done(recorded):
    """A signal raised from inside numba's compiler lock (by a listener on the lock's start) is handled
    only after the new kernel was built: the kernel works, and the handler ran once."""
    from numba import njit

    @njit(cache=False)
    def twice(a):
        return 2 * a

    class RaiseOnce(event.Listener):
        fired = False

        def on_start(self, ev):
            if not self.fired:
                self.fired = True
                signal.raise_signal(signal.SIGINT)

        def on_end(self, ev):
            pass

    listener = RaiseOnce()
    with signals_wait_for_compiles():
        event.register("numba:compiler_lock", listener)
        try:
            with pytest.raises(Stop):
                twice(21)  # compiled now: the lock is taken, the signal raised inside it
            assert len(twice.signatures) == 1  # the kernel was built and registered before the signal was handled
        finally:
            event.unregister("numba:compiler_lock", listener)
        assert twice(21) == 42
    assert recorded == [signal.SIGINT]

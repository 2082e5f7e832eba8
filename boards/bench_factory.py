"""Build an :class:`~hil.boards.instrument.InstrumentBoard` from a validated bench: drivers, transports, programmer.

The only place that turns a bench description into driver objects: one VISA transport per
instrument (resource, VISA library and timeout from the bench file), the driver from the
registry with its channel configurations (mandatory limits, ranges, NPLC, autozero, source
delay, off-mode), and the board's wiring, timing and programmer.  Resources can be replaced
(``resources={name: "TCPIP::127.0.0.1::PORT::SOCKET"}``) to run the same bench against its
emulators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

from hil.boards.bench_config import InstrumentBoardSpec
from hil.boards.instrument import BoardTiming, BoardWiring, InstrumentBoard, Port
from hil.boards.programmers import WriteVerifyProgrammer
from hil.boards.simulated import board_topology
from hil.drivers.errors import InstrumentConfigError
from hil.drivers.protocols import PulsedSource

__all__ = ["open_instruments", "build_instrument_board", "make_instrument_board"]


def open_instruments(bench: Any, managers: Any, resources: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Open a transport and build the driver of every bench instrument (not yet connected).

    ``resources`` replace the bench's VISA addresses by instrument name. On a failure part-way
    every driver built so far is closed, then the error is re-raised.
    """
    import dataclasses

    from hil.bench.instruments import make_driver

    resources = dict(resources or {})
    built: dict[str, Any] = {}
    try:
        for name, spec in bench.instruments.items():
            if name in resources:
                spec = dataclasses.replace(spec, resource=resources[name], visa_library="@py")
            built[name] = make_driver(spec, managers)
    except BaseException:
        for drv in built.values():
            try:
                drv.close()
            except Exception:
                pass
        raise
    return built


def build_instrument_board(spec: InstrumentBoardSpec, instruments: Mapping[str, Any], g_bounds: tuple[float, float],
                           event: Optional[Callable[..., None]] = None,
                           clock: Optional[Callable[[], float]] = None,
                           rehearsal_world: Any = None) -> InstrumentBoard:
    """The board over already-built drivers (real, emulated or in-process).

    ``rehearsal_world``: an in-process or emulated world whose conductances programming then
    sets directly (:class:`~hil.boards.programmers.RehearsalProgrammer`), for exercising the
    measurement path alone; without it the configured programmer (write-verify pulses) is used,
    which the emulated bench answers with its device model.
    """
    bench = spec.bench
    topo = board_topology(bench.circuit)
    w = bench.wiring
    wiring = BoardWiring(sources={n: Port(*p) for n, p in w.sources.items()},
                         outputs={n: Port(*p) for n, p in w.outputs.items()},
                         hidden={n: Port(*p) for n, p in w.hidden.items()})
    hidden_specs = [bench.instruments[i].channels[c].settings for i, c in w.hidden.values()]
    acq = dict(spec.acquisition)
    timing = BoardTiming(nplc=bench.timing.nplc, source_delay_s=bench.timing.source_delay_s,
                         autozero=bench.timing.autozero,
                         scan_range_v=max((s["range_v"] for s in hidden_specs), default=10.0),
                         scan_delay_s=max((s["delay_s"] for s in hidden_specs), default=0.0),
                         scan_nplc=max((s["nplc"] for s in hidden_specs), default=None),
                         scan_autozero=next((s["autozero"] for s in hidden_specs), None), **acq)
    steps = {f"{i}.{c}": bench.instruments[i].channels[c].settings["max_step_v"]
             for group in (w.sources, w.outputs) for i, c in group.values()}
    programmer = None
    prog = spec.programming
    if rehearsal_world is not None and prog.get("scheme") != "none":
        from hil.boards.programmers import RehearsalProgrammer

        programmer = RehearsalProgrammer(rehearsal_world, g_bounds)
    elif prog.get("scheme") == "write_verify":
        inst, _, ch = prog["smu"].partition(".")
        if not isinstance(instruments[inst], PulsedSource):
            raise InstrumentConfigError(
                f"board.programming.smu: {inst} ({type(instruments[inst]).__name__}) cannot apply programming "
                "pulses (no PulsedSource capability); program through an SMU whose driver can (a 2600B or a B2900)",
                instrument=inst)
        names = list(topo.edge_names)
        devices = [prog["devices"][n] for n in names]
        programmer = WriteVerifyProgrammer(instruments[inst], ch, instruments[prog["matrix"]], devices,
                                           prog["settings"], g_bounds, event=event)
    return InstrumentBoard(topo, instruments, wiring, timing, steps, programmer, g_bounds, event=event, clock=clock)


def make_instrument_board(spec: InstrumentBoardSpec, g_bounds: tuple[float, float],
                          resources: Optional[Mapping[str, str]] = None,
                          clock: Optional[Callable[[], float]] = None, rehearsal_world: Any = None) -> InstrumentBoard:
    """Open every instrument of ``spec.bench`` over VISA and build the board (closing it closes the managers)."""
    from hil.drivers.transport import ResourceManagers

    managers = ResourceManagers()
    try:
        instruments = open_instruments(spec.bench, managers, resources)
        board = build_instrument_board(spec, instruments, g_bounds, clock=clock, rehearsal_world=rehearsal_world)
    except BaseException:
        managers.close_all()
        raise
    board.on_close(managers.close_all)
    return board

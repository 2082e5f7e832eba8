"""The instrument-backed board: a physical conductance array measured through SMUs and a scanner.

It implements :class:`hil.board.Board` and :class:`hil.board.PhasedMeasurement` over the
drivers' capability protocols only (``SourceMeter``, ``Scanner``, ``SwitchMatrix`` and the
optional ``TriggeredSweeps`` / ``TriggeredScans``); it never builds a command string and knows
no instrument model.

**Wiring.** Every circuit source node (inputs, inverted copies, bias rails) and every output
port is held by one SMU channel; every hidden node is sensed by one scanner channel.

**A batch is one run of the bench.** ``measure_phases(x, [w₁, w₂, …])`` turns all phases × samples
into one voltage list per SMU channel (plus ramp points from and back to 0 V, and between points
further apart than the channel's ``max_step_v``, when the timing allows them).  With the
triggered capabilities every list is uploaded once, the lead SMU paces the points on the trigger
line, the scanner takes one scan per point, and every instrument is read back once:
O(instruments) exchanges per batch, independent of the batch size.  Without them the board
falls back to stepping point by point (``acquisition: stepwise``; O(points) exchanges, reported
in :attr:`InstrumentBoard.stats`).

**Validity.** After every batch: the compliance flags of every reading, non-finite readings
(overflow and missing-data sentinels), node voltages beyond the scanner range, and every
instrument's error queue (any code outside its whitelist raises).  A sample with a bad reading
in a phase is marked invalid in that phase's :class:`~hil.board.Measurement` (``valid``) and an
event is logged; the estimators never use it.

**Safety.** ``safe_state()`` ramps every source to 0 V, switches outputs off, opens the relays
(sources, then matrices, then scanners; within each stage the instruments on different
interfaces at the same time, so a frozen one holds nobody back); no instrument failure makes it
raise, and a Ctrl-C or SIGTERM during it is handled when it is done.  It runs on ``__exit__``, at
interpreter exit (``atexit``) and after any instrument fault inside a batch.  Programming goes
through a :class:`~hil.boards.programmers.ConductanceProgrammer` and starts with every source at
0 V, so no relay ever switches a live line.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hil.board import BoardBase, BoardTopology, Measurement, ProgramResult, UnsupportedCapability
from hil.boards.interfaces import interface_key, run_per_interface
from hil.compile_signals import deferred_signals
from hil.drivers.errors import InstrumentConnectionError, InstrumentTimeout
from hil.drivers.protocols import TriggeredScans, TriggeredSweeps

log = logging.getLogger("hil.boards.instrument")

#: an instrument whose safe shutdown takes longer than this (s) gets a progress line on stderr: a
#: frozen instrument waits out every step's timeout (the others, on their own interfaces, do not wait for it)
SLOW_SHUTDOWN_S = 5.0

__all__ = ["Port", "BoardWiring", "BoardTiming", "InstrumentBoard", "ramp_plan"]


@dataclass(frozen=True)
class Port:
    """One instrument channel: instrument name and channel name (scanner channels as text, e.g. ``"101"``)."""

    instrument: str
    channel: str

    def __str__(self) -> str:
        return f"{self.instrument}.{self.channel}"


@dataclass(frozen=True)
class BoardWiring:
    """Circuit node name → instrument channel.

    Attributes:
        sources: every circuit source node (inputs, inverted copies, rails) → SMU channel.
        outputs: every output port → SMU channel (holds w, measures the port current).
        hidden: every hidden node → scanner channel.
    """

    sources: Mapping[str, Port]
    outputs: Mapping[str, Port]
    hidden: Mapping[str, Port]

    def smu_ports(self) -> list[Port]:
        return list(self.sources.values()) + list(self.outputs.values())


@dataclass(frozen=True)
class BoardTiming:
    """Measurement timing of a bench (SI units).

    Attributes:
        nplc: integration time of every SMU and scanner reading, power-line cycles.
        source_delay_s: SMU source delay before each reading, s.
        settle_s: extra settling time per list point, s.
        autozero: ``off``, ``once`` or ``on`` (``on`` multiplies the reading time by ~2–3).
        scan_delay_s: scanner channel delay, s.
        scan_range_v: scanner fixed DC range, V.
        ramp_points: insert ramp points (measured but discarded) from and back to 0 V and between
            points further apart than ``max_step_v``; without them such a list is refused.
        max_points: points per sweep (longer batches run as several sweeps).
        noise_floor_v: standard deviation of one node-voltage reading, V (0: unknown/exact);
            the ``hl`` flip check uses it as its noise floor.
        acquisition: ``auto`` (triggered when every instrument has the capability),
            ``triggered`` (required) or ``stepwise``.
        scan_nplc, scan_autozero: scanner integration and autozero when they differ from the
            SMUs' (``None``: the same as ``nplc`` / ``autozero``).
    """

    nplc: float = 1.0
    source_delay_s: float = 1e-3
    settle_s: float = 0.0
    autozero: str = "once"
    scan_delay_s: float = 0.0
    scan_range_v: float = 10.0
    ramp_points: bool = True
    max_points: int = 2000
    noise_floor_v: float = 0.0
    acquisition: str = "auto"
    scan_nplc: Optional[float] = None
    scan_autozero: Optional[str] = None


def ramp_plan(levels: np.ndarray, max_step: np.ndarray, ramps: bool) -> tuple[np.ndarray, np.ndarray]:
    """Insert ramp points so consecutive levels of every channel differ by ≤ its ``max_step_v``.

    Args:
        levels: (points, channels) wanted levels, V.
        max_step: (channels,) largest step per channel, V.
        ramps: allow inserting points; if False a too-large step raises ``ValueError``.

    Returns:
        ``(path, keep)``: (n, channels) levels starting and ending at 0 V, and the (n,) mask of
        the measurement points (True) among the inserted ramp points.  The first and last points
        are within one step of 0 V.
    """
    zero = np.zeros((1, levels.shape[1]))
    anchors = np.concatenate([zero, levels, zero])
    rows, keep = [], []
    for k in range(1, anchors.shape[0]):
        a, b = anchors[k - 1], anchors[k]
        n = int(np.max(np.ceil(np.abs(b - a) / max_step - 1e-9), initial=1))
        n = max(n, 1)
        if n > 1 and not ramps:
            raise ValueError(f"point {k - 1}: a step of {np.max(np.abs(b - a)):.4g} V exceeds max_step_v "
                             "and ramp points are not allowed (timing.ramp_points: false)")
        for j in range(1, n):
            rows.append(a + (b - a) * j / n)
            keep.append(False)
        if k < anchors.shape[0] - 1:
            rows.append(b)
            keep.append(True)
    return np.array(rows).reshape(-1, levels.shape[1]), np.array(keep, bool)


@dataclass
class BatchStats:
    """Counters of the work done (for benchmarks and the bench-time column)."""

    sweeps: int = 0
    points: int = 0
    measured_points: int = 0
    invalid_samples: int = 0
    stepwise_points: int = 0
    batches: int = 0
    events: list = field(default_factory=list)


def _trouble(err: BaseException) -> str:
    """What went wrong in a safe shutdown, for ``exc.shutdown_trouble``: "interrupted" (a Ctrl-C or
    SIGTERM, which the shutdown holds until every instrument is done) or "<type>: <message>"."""
    return "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"


def record_read_back(board: Any, exc: BaseException, make_safe: bool = True) -> None:
    """Set ``exc.unverified`` (unless something already set it) to what ``board``'s outputs read back
    (``board.verify_safe()``: the channels not confirmed off, ``[]`` when all are), after its safe
    state when ``make_safe``.

    Never raises, so the exception being handled stays the one that leaves: a safe state that
    fails or is interrupted is recorded in ``exc.shutdown_trouble`` (see :func:`_trouble`; the
    command line says so) and the outputs are read back all the same; a read-back that fails, or
    a second Ctrl-C or SIGTERM during it, lists every instrument as ``"<name>: not verified (<why>)"``."""
    if getattr(exc, "unverified", None) is not None:
        return
    if make_safe:
        try:
            board.safe_state()
        except (Exception, KeyboardInterrupt) as err:
            if getattr(exc, "shutdown_trouble", None) is None:
                exc.shutdown_trouble = _trouble(err)
    try:
        exc.unverified = board.verify_safe()
    except (Exception, KeyboardInterrupt) as err:
        why = "interrupted" if isinstance(err, KeyboardInterrupt) else f"read-back failed: {err}"
        exc.unverified = [f"{name}: not verified ({why})" for name in getattr(board, "instruments", None) or ["bench"]]


class InstrumentBoard(BoardBase):
    """A conductance array on instruments (see the module docstring).

    Args:
        topology: the board view of the designed network (node names must match the wiring).
        instruments: connected-or-not driver objects by name (``SourceMeter``, ``Scanner``,
            ``SwitchMatrix``).
        wiring: node → channel map.
        timing: measurement timing.
        limits_step_v: ``{"inst.ch": max_step_v}`` per SMU channel (for ramp points), V.
        programmer: writes conductances (``None``: the array is fixed; ``program`` then only
            reads back and reports every change as unconverged).
        g_bounds: programmable range (g_min, g_max), S.
        event: ``event(kind, **data)`` callback for compliance/sentinel/abort evidence.
        clock: ``clock() -> s`` of bench time (the emulator's virtual clock); default wall time.
    """

    def __init__(self, topology: BoardTopology, instruments: Mapping[str, Any], wiring: BoardWiring,
                 timing: BoardTiming, limits_step_v: Mapping[str, float], programmer: Any = None,
                 g_bounds: tuple[float, float] = (0.0, 1e-4), event: Optional[Callable[..., None]] = None,
                 clock: Optional[Callable[[], float]] = None) -> None:
        self._topology = topology
        self.instruments = dict(instruments)
        self.wiring = wiring
        self.timing = timing
        self._step = dict(limits_step_v)
        self.programmer = programmer
        self._bounds = (float(g_bounds[0]), float(g_bounds[1]))
        self.event_sink = event
        self._clock = clock or time.monotonic
        self._on_close: list[Callable[[], None]] = []
        self._t0: Optional[float] = None
        self._g: Optional[np.ndarray] = None
        self.stats = BatchStats()
        self._connected = False
        self._atexit = False
        self._safe_state_lock = threading.RLock()  # one safe state at a time (see safe_state)
        self._safe_state_running = False
        names = topology.node_names
        kinds = dict(zip(names, topology.node_kinds))
        self._source_nodes = [n for n in names if kinds[n] == "source"]
        self._output_nodes = [n for n in names if kinds[n] == "output"]
        self._hidden_nodes = [n for n in names if kinds[n] == "hidden"]
        self._check_wiring()

    def _event(self, kind: str, **data) -> None:
        self.stats.events.append((kind, data))
        if self.event_sink is not None:
            try:
                self.event_sink(kind, **data)
            except Exception:  # the event log must never break a measurement
                log.exception("event sink failed")

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after the instruments are closed (e.g. close the VISA resource managers)."""
        self._on_close.append(fn)

    # ---- set-up -----------------------------------------------------------------------
    def _check_wiring(self) -> None:
        w = self.wiring
        problems = []
        for label, nodes, wired in (("sources", self._source_nodes, w.sources), ("outputs", self._output_nodes, w.outputs),
                                    ("hidden", self._hidden_nodes, w.hidden)):
            missing = [n for n in nodes if n not in wired]
            extra = [n for n in wired if n not in nodes]
            if missing:
                problems.append(f"wiring.{label}: not wired: {', '.join(missing)}")
            if extra:
                problems.append(f"wiring.{label}: not nodes of this kind in the circuit: {', '.join(extra)}")
        used: dict[str, str] = {}
        for label, wired in (("sources", w.sources), ("outputs", w.outputs), ("hidden", w.hidden)):
            for node, port in wired.items():
                key = str(port)
                if key in used:
                    problems.append(f"wiring.{label}.{node}: channel {key} already used by {used[key]}")
                used[key] = node
                if port.instrument not in self.instruments:
                    problems.append(f"wiring.{label}.{node}: unknown instrument {port.instrument!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def _smus(self) -> dict[str, list[Port]]:
        """SMU instrument name → its wired ports, in wiring order (sources then outputs)."""
        out: dict[str, list[Port]] = {}
        for port in self.wiring.smu_ports():
            out.setdefault(port.instrument, []).append(port)
        return out

    def _scanners(self) -> dict[str, list[tuple[int, str]]]:
        """Scanner name → [(channel number, hidden node)] in ascending channel order (the scan order)."""
        out: dict[str, list[tuple[int, str]]] = {}
        for node, port in self.wiring.hidden.items():
            out.setdefault(port.instrument, []).append((int(port.channel), node))
        return {k: sorted(v) for k, v in out.items()}

    def connect(self) -> None:
        """Connect every instrument, configure the scan lists, switch the SMU outputs on at 0 V.

        A failure part-way runs :meth:`safe_state` for everything touched, then re-raises.
        """
        if self._connected:
            return
        if not self._atexit:
            atexit.register(self.safe_state)
            self._atexit = True
        try:
            order = sorted(self.instruments, key=lambda n: (0 if self._is_matrix(n) else 1 if n in self._scanners() else 2))
            for name in order:
                self.instruments[name].connect()
            t = self.timing
            for name, chans in self._scanners().items():
                self.instruments[name].configure_scan([c for c, _ in chans], t.scan_nplc or t.nplc, t.scan_range_v,
                                                      t.scan_autozero or t.autozero, t.scan_delay_s)
            for port in self.wiring.smu_ports():
                smu = self.instruments[port.instrument]
                smu.set_voltage(port.channel, 0.0)
                smu.output(port.channel, True)
            self._connected = True
            self._t0 = self._clock()
        except BaseException:
            self.safe_state()
            raise

    def _is_matrix(self, name: str) -> bool:
        inst = self.instruments[name]
        return hasattr(inst, "open_all") and hasattr(inst, "closed")

    def snapshots(self) -> dict[str, Any]:
        """Every instrument's snapshot (for the run metadata)."""
        out = {}
        for name, inst in self.instruments.items():
            try:
                out[name] = inst.snapshot()
            except Exception as exc:  # a snapshot must never stop a run
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    # ---- protocol -----------------------------------------------------------------------
    @property
    def topology(self) -> BoardTopology:
        return self._topology

    @property
    def conductance_bounds(self) -> tuple[float, float]:
        return self._bounds

    def bench_time_s(self) -> float:
        """Bench time since connect, s (virtual on an emulated bench)."""
        return 0.0 if self._t0 is None else self._clock() - self._t0

    def measure(self, x: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        return self.measure_phases(x, [w])[0]

    def measure_stage(self, x, stage, w=None, injected=None) -> Measurement:
        """Not available: this bench has no :class:`~hil.board.BufferedInjection` (always raises).

        Its wiring holds one stage, with SMU channels on the sources and ports and voltmeter
        (scanner) channels on the hidden nodes; injecting at buffered nodes needs buffers
        between stages and a current source on every buffered node.
        """
        raise UnsupportedCapability(
            "current injection at buffered nodes (the 'hl' estimator on a cascade): this bench is one stage whose "
            "hidden nodes are wired to scanner (voltmeter) channels only, with no buffers and no current sources")

    def measure_phases(self, x: np.ndarray, w_phases: list) -> list[Measurement]:
        """Every phase of a batch in one run of the bench (see the module docstring)."""
        topo = self._topology
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != topo.n_inputs:
            raise ValueError(f"expected {topo.n_inputs} inputs per sample, got {x.shape[1]}")
        return self._measure_levels(topo.source_voltages(x), w_phases)

    def measure_sources(self, u: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        """Optional capability (calibration): every source SMU channel, rails included, at ``u``
        (B, p) in V instead of the levels the inputs map to; the channels' limits still apply."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != self._topology.n_sources:
            raise ValueError(f"expected {self._topology.n_sources} source voltages per sample, got {u.shape[1]}")
        return self._measure_levels(u, [w])[0]

    def level_bounds_v(self) -> tuple[np.ndarray, np.ndarray]:
        """Per source then output port: the channel's effective bounds in V (``v_min``/``v_max``
        narrowed by ``max_power_w / i_compliance_a``; a sweep that a calibration plans stays inside
        them; the drivers refuse anything beyond)."""
        from hil.drivers.limits import effective_bounds

        self.connect()
        b = [effective_bounds(self.instruments[p.instrument].config(p.channel).limits) for p in self.wiring.smu_ports()]
        return np.array([lo for lo, _ in b]), np.array([hi for _, hi in b])

    def _measure_levels(self, u: np.ndarray, w_phases: list) -> list[Measurement]:
        self.connect()
        topo = self._topology
        B, q = u.shape[0], topo.n_outputs
        ws = [np.broadcast_to(topo.output_voltage, (B, q)) if w is None else np.asarray(w, float).reshape(B, q)
              for w in w_phases]
        levels = np.concatenate([np.concatenate([u, w], axis=1) for w in ws], axis=0)  # (phases·B, p + q)
        self._check_levels(levels)
        try:
            cur, volt, bad = self._acquire(levels)
        except BaseException as exc:
            self._event("abort", reason=f"{type(exc).__name__}: {exc}")
            self.safe_state()
            raise
        self.stats.batches += 1
        p = topo.n_sources
        out = []
        for k, w in enumerate(ws):
            sl = slice(k * B, (k + 1) * B)
            valid = ~bad[sl]
            if not valid.all():
                self.stats.invalid_samples += int(np.sum(~valid))
                self._event("compliance", phase=k, samples=np.flatnonzero(~valid).tolist())
            i_src = cur[sl, :p]
            y = -cur[sl, p:]  # SMU current flows into the network; y is network → port
            out.append(Measurement(u=u.copy(), w=np.array(w), y=y, i_src=i_src, e=volt[sl], on=None,
                                   piecewise_linear=False, valid=valid, noise_v=self.timing.noise_floor_v,
                                   info={"acquisition": self._mode()}))
        return out

    def _check_levels(self, levels: np.ndarray) -> None:
        """Every level of a batch (points, p + q) V within its channel's effective bounds, before
        any I/O: a batch the drivers would refuse part-way is refused whole, naming node and channel.

        Raises:
            LimitViolation: the first node with a level outside (or not finite).
        """
        from hil.drivers.errors import LimitViolation
        from hil.drivers.limits import effective_bounds

        nodes = list(self.wiring.sources) + list(self.wiring.outputs)
        for j, (node, pt) in enumerate(zip(nodes, self.wiring.smu_ports())):
            lo, hi = effective_bounds(self.instruments[pt.instrument].config(pt.channel).limits)
            col = levels[:, j]
            if not np.all(np.isfinite(col)):
                raise LimitViolation(f"{node} ({pt}) level", float("nan"), hi, instrument=pt.instrument,
                                     reason="not finite; nothing of the batch was applied")
            k = int(np.argmax(np.maximum(col - hi, lo - col)))
            if col[k] > hi + 1e-12 or col[k] < lo - 1e-12:
                raise LimitViolation(f"{node} ({pt}) level", float(col[k]), hi if col[k] > hi else lo,
                                     instrument=pt.instrument,
                                     reason=f"outside the channel's {lo:g} .. {hi:g} V; nothing of the batch was "
                                            "applied (check data.input_scale_v, the rails and the estimator's drive)")

    # ---- acquisition ------------------------------------------------------------------------
    def _mode(self) -> str:
        t = self.timing.acquisition
        if t != "auto":
            return t
        smus_ok = all(isinstance(self.instruments[n], TriggeredSweeps)
                      and getattr(self.instruments[n], "bench_trigger_wired", True) for n in self._smus())
        scans_ok = all(isinstance(self.instruments[n], TriggeredScans) for n in self._scanners())
        return "triggered" if smus_ok and scans_ok and self._lead() is not None else "stepwise"

    def _lead(self) -> Optional[str]:
        """The SMU that paces a triggered sweep: the first in wiring order whose driver can drive the
        bench trigger line (a driver with ``leads_bench_trigger = False`` only follows)."""
        return next((n for n in self._smus() if getattr(self.instruments[n], "leads_bench_trigger", True)), None)

    def _acquire(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply (points, p + q) levels; return currents (points, p + q) A, hidden voltages
        (points, n) V and a (points,) bad-reading mask."""
        ports = self.wiring.smu_ports()
        n_pts = levels.shape[0]
        cur = np.empty((n_pts, len(ports)))
        volt = np.empty((n_pts, len(self._hidden_nodes)))
        bad = np.zeros(n_pts, bool)
        step = np.array([self._step.get(str(pt), np.inf) for pt in ports])
        chunk = max(1, int(self.timing.max_points))
        for start in range(0, n_pts, chunk):
            sl = slice(start, min(n_pts, start + chunk))
            if self._mode() == "triggered":
                c, v, b = self._run_triggered(levels[sl], step)
            else:
                c, v, b = self._run_stepwise(levels[sl])
            cur[sl], volt[sl], bad[sl] = c, v, b
        for name, inst in self.instruments.items():
            inst.check_errors()
        over = ~np.isfinite(volt) | (np.abs(volt) >= self.timing.scan_range_v * 1.2)
        return cur, volt, bad | ~np.all(np.isfinite(cur), axis=1) | np.any(over, axis=1)

    def _run_triggered(self, levels: np.ndarray, step: np.ndarray):
        ports = self.wiring.smu_ports()
        path, keep = ramp_plan(levels, step, self.timing.ramp_points)
        smus = self._smus()
        lead = self._lead() or next(iter(smus))  # with no lead-capable SMU, its arm_sweep refuses
        for name, chans in self._scanners().items():
            self.instruments[name].arm_scan(path.shape[0])
        col = {str(pt): k for k, pt in enumerate(ports)}
        for name in [n for n in smus if n != lead] + [lead]:
            vec = {pt.channel: path[:, col[str(pt)]] for pt in smus[name]}
            self.instruments[name].arm_sweep(vec, self.timing.settle_s, lead=(name == lead))
        self.instruments[lead].start_sweep()
        cur = np.empty((path.shape[0], len(ports)))
        comp = np.zeros(path.shape[0], bool)
        for name, chans in smus.items():
            res = self.instruments[name].fetch_sweep()
            for pt in chans:
                k = res.channels.index(pt.channel) if res.channels else [c.channel for c in chans].index(pt.channel)
                cur[:, col[str(pt)]] = res.i_meas[:, k]
                comp |= res.compliance[:, k]
        volt = self._hidden_from_scans({n: self.instruments[n].fetch_scan() for n in self._scanners()}, path.shape[0])
        self.stats.sweeps += 1
        self.stats.points += path.shape[0]
        self.stats.measured_points += int(keep.sum())
        return cur[keep], volt[keep], comp[keep]

    def _run_stepwise(self, levels: np.ndarray):
        """Point by point with the plain protocol (set levels, spot readings, one scan per point)."""
        ports = self.wiring.smu_ports()
        n = levels.shape[0]
        cur = np.empty((n, len(ports)))
        comp = np.zeros(n, bool)
        scans: dict[str, list] = {name: [] for name in self._scanners()}
        for k in range(n):
            for j, pt in enumerate(ports):
                self.instruments[pt.instrument].set_voltage(pt.channel, float(levels[k, j]))
            for j, pt in enumerate(ports):
                r = self.instruments[pt.instrument].measure_current(pt.channel)
                cur[k, j] = r.value
                comp[k] |= bool(r.compliance)
            for name in scans:
                scans[name].append(self.instruments[name].read_scan())
            # counted point by point: a progress display of a long stepwise batch follows it
            self.stats.points += 1
            self.stats.measured_points += 1
            self.stats.stepwise_points += 1
        for pt in ports:  # back to 0 V (ramped by the driver) so no relay ever meets a live line
            self.instruments[pt.instrument].set_voltage(pt.channel, 0.0)
        volt = self._hidden_from_scans({k: np.array(v).reshape(n, -1) for k, v in scans.items()}, n)
        return cur, volt, comp

    def _hidden_from_scans(self, scans: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        idx = {node: k for k, node in enumerate(self._hidden_nodes)}
        volt = np.full((n, len(self._hidden_nodes)), np.nan)
        for name, chans in self._scanners().items():
            data = np.asarray(scans[name], float).reshape(n, len(chans))
            for col, (_, node) in enumerate(chans):
                volt[:, idx[node]] = data[:, col]
        return volt

    # ---- programming ----------------------------------------------------------------------------
    def zero_sources(self) -> None:
        """Every wired source at 0 V (ramped by the drivers); called before any relay change."""
        for pt in self.wiring.smu_ports():
            self.instruments[pt.instrument].set_voltage(pt.channel, 0.0)

    def program(self, g: np.ndarray, rel_tol: float = 0.01) -> ProgramResult:
        """Program conductances (m,) S through the programmer; ``rel_tol <= 0`` means its configured tolerance."""
        self.connect()
        target = np.clip(np.asarray(g, dtype=float), *self._bounds)
        if self.programmer is None:
            now = self.read_conductances()
            same = np.isclose(now, target, rtol=max(rel_tol, 1e-12), atol=0)
            return ProgramResult(target, now, np.zeros(now.size, int), same, np.zeros(now.size, bool), rel_tol)
        t0 = self._clock()
        try:
            self.zero_sources()
            res = self.programmer.program(target, rel_tol if rel_tol > 0 else None)
            self.zero_sources()
        except BaseException as exc:
            self._event("abort", reason=f"programming: {type(exc).__name__}: {exc}")
            self.safe_state()
            raise
        res.seconds = self._clock() - t0
        self._g = res.achieved.copy()
        self._event("write_verify", **res.summary())
        return res

    def read_conductances(self) -> np.ndarray:
        """Read back the conductances (m,) S (cached after programming; the programmer reads them)."""
        if self._g is None:
            if self.programmer is None:
                raise RuntimeError("this bench has no programmer configured and cannot read its conductances")
            self.connect()
            self.zero_sources()
            self._g = np.asarray(self.programmer.read(), float)
            self.zero_sources()
        return self._g.copy()

    # ---- safety -------------------------------------------------------------------------------------
    def safe_state(self) -> None:
        """Sources to 0 V and off, then relays open, then the rest (scanners).

        Within each of the three groups, instruments on different interfaces shut down at the same
        time (:func:`hil.boards.interfaces.run_per_interface`), so one that stopped answering and
        waits out its timeouts does not keep the others live meanwhile; a group starts when the
        one before it is done (no relay opens before every source is off).  Nothing an instrument
        does makes it raise.  In the main thread, SIGINT and SIGTERM wait until the end
        (:func:`hil.compile_signals.deferred_signals`): one arriving meanwhile makes the running
        ramps stop at once (outputs still switched off) and goes to its handler when every
        instrument is done, so what that handler raises (``KeyboardInterrupt``, ``SystemExit``)
        leaves this call then: the program stops as asked, after the bench is safe, not half-way.
        One safe state runs at a time: a call from another thread waits for the running one, a
        call from the same thread (a handler) returns at once."""
        with deferred_signals():  # (within a stage, run_per_interface stops the ramps at once)
            with self._safe_state_lock:  # (re-entrant: a handler in this thread finds it running)
                if self._safe_state_running:
                    log.warning("safe state: already running in this thread")
                    return
                self._safe_state_running = True
                try:
                    self._shut_down_in_stages()
                finally:
                    self._safe_state_running = False

    def _shut_down_in_stages(self) -> None:
        """:meth:`safe_state`'s work: the three stages, then the board forgets its connection."""
        sources = [n for n in self.instruments if hasattr(self.instruments[n], "set_voltage")]
        matrices = [n for n in self.instruments if self._is_matrix(n) and n not in sources]
        rest = [n for n in self.instruments if n not in sources and n not in matrices]
        total, done = len(self.instruments), [0]
        lock = threading.Lock()

        def shut_down(name: str) -> None:
            started = time.monotonic()
            report = None
            try:
                report = self.instruments[name].safe_shutdown()
            except KeyboardInterrupt:  # (outside the main thread's held signals) must not skip the others
                log.error("safe state: %s: interrupted (ramps skipped; the read-back says what is off)", name)
                report = "interrupted"
            except BaseException as exc:
                log.error("safe state: %s failed: %s: %s", name, type(exc).__name__, exc)
                report = f"failed: {type(exc).__name__}: {exc}"
            with lock:  # (one progress line at a time, numbered in the order they finish)
                done[0] += 1
                self._say_if_slow(name, started, report, done[0], total)

        for group in (sources, matrices, rest):
            run_per_interface(group, self._interface_of, shut_down, lambda names=group: self._stop_ramps(names))
        self._connected = False
        forget = getattr(self.programmer, "forget", None)
        if forget is not None:
            forget()

    def _interface_of(self, name: str) -> str:
        return interface_key(self.instruments[name])

    def _stop_ramps(self, names: list[str]) -> None:
        """Ctrl-C during a parallel shutdown: the ramps still running stop at their next step (the
        outputs are still switched off; the read-back says what is off)."""
        log.error("safe state: a signal arrived during the safe shutdown; ramps skipped, outputs still switched off")
        for name in names:
            stop = getattr(self.instruments[name], "abort_ramps", None)
            if stop is not None:
                stop()

    @staticmethod
    def _say_if_slow(name: str, started: float, report: Any, k: int, n: int) -> None:
        """A line on stderr when instrument ``name``'s shutdown took over :data:`SLOW_SHUTDOWN_S`
        (the k-th of n to finish): what it reported, so a long silent wait is not taken for a hang."""
        took = time.monotonic() - started
        if took <= SLOW_SHUTDOWN_S:
            return
        import sys

        what = report.summary() if hasattr(report, "summary") else str(report) if report else "done"
        print(f"hil: safe shutdown: {name} took {took:.0f} s ({what}); {k} of {n} instruments done",
              file=sys.stderr, flush=True)

    def verify_safe(self) -> list[str]:
        """Read back every SMU channel's output state and programmed level, and every matrix's
        closed relays; return what is (or may be) not off at 0 V, or not open.

        Empty when every output reports off with its level within 1 µV of 0 V and no matrix
        reports a closed relay.  A channel whose state or level cannot be read (dead link,
        implausible reply) is listed as unverified: the caller must not claim it is safe.  Once
        an instrument's link fails (a timeout, a closed connection), its other channels are
        listed as unverified without asking it again (each would wait out the timeout); the
        instruments are read on their interfaces at the same time, as :meth:`safe_state` does.
        """
        found: dict[str, list[str]] = {}

        def check(name: str) -> None:
            found[name] = self._unsafe_outputs(name)

        run_per_interface(list(self.instruments), self._interface_of, check, lambda: None)
        return [p for name in self.instruments for p in found.get(name, [f"{name}: not verified (interrupted)"])]

    def _unsafe_outputs(self, name: str) -> list[str]:
        """What of instrument ``name`` is (or may be) not off at 0 V, or not open (see :meth:`verify_safe`)."""
        inst = self.instruments[name]
        if getattr(inst, "wrong_instrument", None) is not None:  # not ours: asking it would talk to another
            return [f"{name}: not connected, another instrument answers at its resource (nothing but "
                    "*IDN? was sent to it; check the bench file's resource)"]
        if self._is_matrix(name):  # a relay left closed joins lines the next run expects apart
            try:
                if closed := inst.closed():
                    spec = getattr(inst, "specifier", lambda rc: f"{rc[0]}{rc[1]:02d}")
                    return [f"{name}: relays still closed: " + ", ".join(spec(c) for c in sorted(closed))]
            except BaseException as exc:
                return [f"{name}: relays not verified open ({type(exc).__name__})"]
            return []
        if not hasattr(inst, "output_enabled"):
            return []
        problems, dead = [], None
        for ch in getattr(inst, "channels", ()):
            if dead is not None:
                problems.append(f"{name}.{ch}: not verified ({dead}; not asked again)")
                continue
            try:
                if inst.output_enabled(ch):
                    problems.append(f"{name}.{ch}: output still on")
                elif abs(level := inst.voltage_setpoint(ch)) > 1e-6:
                    problems.append(f"{name}.{ch}: off, but its level reads back {level:.6g} V")
            except BaseException as exc:
                problems.append(f"{name}.{ch}: not verified ({type(exc).__name__})")
                if isinstance(exc, (InstrumentTimeout, InstrumentConnectionError, OSError)):
                    dead = type(exc).__name__
        return problems

    def close(self) -> None:
        """Safe state, then release every transport (also when a signal's handler raises at the
        end of the safe state: its exception leaves after the transports are closed).  A Ctrl-C or
        SIGTERM held during the shutdown, or a safe state that fails (``shutdown_trouble``), leaves
        with the outputs read back first (``unverified``, as :func:`hil.api.outputs_read_back` sets
        it inside a run), so that what the command line then says about the bench is what the
        instruments answered.  Leaving a ``with`` block on an exception, that exception is the one
        that leaves, with what this shutdown found (see :meth:`__exit__`)."""
        try:
            self.safe_state()
        except (Exception, KeyboardInterrupt) as exc:
            if not isinstance(exc, KeyboardInterrupt):  # (a bug: the instruments' own failures are handled
                exc.shutdown_trouble = _trouble(exc)  # inside the safe state; a held signal let it finish)
            record_read_back(self, exc, make_safe=False)  # what is still on, before the transports close
            raise  # the signal's interrupt or the failure, whatever the read-back did
        finally:
            self._release()

    def _release(self) -> None:
        for inst in self.instruments.values():
            try:
                inst.close()
            except Exception as exc:
                log.error("closing %s failed: %s", getattr(inst, "name", "?"), exc)
        if self._atexit:
            atexit.unregister(self.safe_state)
            self._atexit = False
        while self._on_close:
            try:
                self._on_close.pop()()
            except Exception as exc:
                log.error("closing: %s", exc)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except (Exception, KeyboardInterrupt) as err:  # the failure in flight leaves, with what this shutdown found
            if getattr(exc, "shutdown_trouble", None) is None:
                exc.shutdown_trouble = getattr(err, "shutdown_trouble", None) or _trouble(err)
            if getattr(err, "unverified", None) is not None:  # read back after the closing shutdown: newer
                exc.unverified = err.unverified

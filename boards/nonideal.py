"""A simulated board with device non-idealities (:mod:`hil.devices`).

The physics is the same exact equilibrium as :class:`~hil.boards.simulated.SimulatedBoard`;
what changes is which circuit is solved and what the instruments report:

* ``program`` writes only devices whose target changed (a bench does not pulse a
  device it is not asked to change); each write draws programming noise, faulty
  devices keep their value.  It returns the commanded (range-clipped) targets: an
  open-loop programmer does not know what the devices became (use write-verify).
* ``measure`` solves the circuit with the conductances the devices show at that moment
  (drift since their last write, temperature, a fresh read-noise draw per board call),
  the spread diode bank, the crossbar wires (exact, :mod:`hil.circuit.wires`) and the
  source voltages as the DACs apply them; the reported currents and voltages pass
  through the reading chain (offset, gain, noise, quantisation).  A sample with a node-voltage
  reading at full scale, a commanded source beyond the DAC range or, at the configured port
  voltages (an operating point), a port-current reading at full scale is marked invalid
  (``valid``); with port voltages given (perturbation phases) such a sample stays valid and its
  port-current readings are reported as NaN instead.  ``info["over_range"]`` says which readings sat at full scale.
* ``read_conductances`` is a read of the devices (read noise included).
* with wires, every measurement's ``info["wire_ir_drop"]`` carries the first-order IR drop
  along the lines relative to the device voltages (:func:`~hil.circuit.wire_bias.ir_drop_estimate`):
  gradients formed from line-terminal voltages are biased by about that much.
* with ``redraw: write`` (noise-aware pre-training) every programming event draws a new
  board instance of the same distribution (all static draws: spread, faults, diodes,
  channel errors) and writes every device to it, so training sees the distribution of
  boards rather than one board.

The hidden truth (``true_conductances``) exists for tests and benchmarks only; calibration
and training never use it.  ``state_dict``/``load_state_dict`` carry the device state and the
dynamic random stream, so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import json

import numpy as np

from hil.board import BoardBase, Measurement
from hil.boards.simulated import board_topology
from hil.circuit.model import Circuit
from hil.circuit.solve import EquilibriumSolver
from hil.circuit.wire_bias import ir_drop_estimate
from hil.circuit.wires import apply_wires
from hil.devices.model import DeviceModel, DeviceSpec


class NonIdealBoard(BoardBase):
    """A simulated crossbar with the non-idealities of ``spec`` (see module docstring).

    Args:
        circuit: the nominal network; its conductances are the first programming targets.
        g_min, g_max: programmable range, S.
        spec: the device parameters (:func:`hil.devices.parse_devices`).
    """

    def __init__(self, circuit: Circuit, g_min: float, g_max: float, spec: DeviceSpec):
        if not 0 <= g_min < g_max:
            raise ValueError("need 0 <= g_min < g_max (siemens)")
        self._nominal = circuit.validate()
        self._topology = board_topology(circuit)
        self._bounds = (float(g_min), float(g_max))
        self.spec = spec
        self._instance = 0
        self._set_instance(0)
        self._wire_spec = spec.wires.spec()
        m = self._topology.n_conductances
        self._target = np.full(m, np.nan)
        self._g_dev = np.zeros(m)
        self._t_prog = np.zeros(m)
        self.clock_s = 0.0
        self._cache: tuple | None = None  # (solver, wired) for the current device state
        self._effective_topology: tuple | None = None  # (hidden-node pairs, topology) of the wired circuit
        self._measured: EquilibriumSolver | None = None  # the solver of the last board call
        self._last: tuple | None = None
        self._write(np.clip(circuit.conductance_vector(), g_min, g_max))

    # ---- protocol -----------------------------------------------------------------
    @property
    def topology(self):
        return self._topology

    @property
    def conductance_bounds(self) -> tuple[float, float]:
        return self._bounds

    def program(self, g: np.ndarray, rel_tol: float = 0.01) -> np.ndarray:
        """Write changed targets once (open loop); returns the commanded targets (S)."""
        g = np.asarray(g, dtype=float)
        if g.shape != self._target.shape:
            raise ValueError(f"expected {self._target.size} conductances, got shape {g.shape}")
        if not np.isfinite(g).all():  # NaN would be written to the devices; ±inf is no programming target
            k = int(np.flatnonzero(~np.isfinite(g))[0])
            raise ValueError(f"conductances must be finite (siemens); {self._topology.edge_names[k]} is {g[k]}")
        g = np.clip(g, *self._bounds)
        self._write(g)
        return g.copy()

    def read_conductances(self) -> np.ndarray:
        return self.model.seen(self._g_dev, self.clock_s - self._t_prog, read=True)

    def measure(self, x: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self._topology.n_inputs:
            raise ValueError(f"expected {self._topology.n_inputs} inputs per sample, got {x.shape[1]}")
        return self.measure_sources(self._topology.source_voltages(x), w)

    def measure_sources(self, u: np.ndarray, w: np.ndarray | None = None) -> Measurement:
        """Optional capability: command every source (rails included) directly, u (B, p) in V.

        Calibration uses it for zero readings (all sources at 0 V) and probe patterns."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != self._topology.n_sources:
            raise ValueError(f"expected {self._topology.n_sources} source voltages per sample, got {u.shape[1]}")
        solver, wired = self._solver()
        self._measured = solver  # the conductances of this board call, for linearized_response
        u_applied = self.model.sources(u)
        warm = self._last if self._last is not None and self._last.e.shape[0] == u.shape[0] else None
        st = solver.solve(u_applied, w, warm=warm)
        if w is None:
            self._last = st
        y, i_src = st.y, st.i_src
        if wired is not None:
            y, i_src = wired.port_currents(y, st.w), wired.source_currents(i_src, st.u)
        y_m, i_m, e_m = self.model.readings(y, i_src, st.e)
        if self.spec.drift.enabled:
            self.clock_s += self.spec.drift.seconds_per_measure
        info = {"report": st.report} if wired is None else {"report": st.report, "wire_ir_drop": self._wire_drop}
        if self._ambiguous_states:  # two clamps per element: see SimulatedBoard
            info["ambiguous_states"] = True
        varying, reading = self.model.varying_note(), self.model.reading_note()
        if varying:
            info["varying_conductances"] = varying
        if self.spec.redraw == "write":  # (an estimator that reprograms between its measurements must know)
            info["redraws_on_write"] = ("the board draws new devices at every programming event (devices.redraw: "
                                        "write)")
        if reading:
            info["reading_errors"] = reading
        over = self.model.over_range(u, y_m, i_m, e_m)
        valid = None
        if over is not None:  # which readings sat at full scale (calibration steps use the detail)
            info["over_range"] = over
            # node voltages or sources unusable: the sample is invalid.  Port currents at full scale
            # invalidate an operating point (its port currents are the network's output); with port
            # voltages given (perturbation phases, whose node voltages are what an estimator reads)
            # the sample stays valid and its port-current readings become NaN, so nothing uses the
            # range as if it were the signal.  A source-current reading at full scale leaves the
            # sample usable (only calibration and ∂ℓ/∂u read it; they check ``over_range``).
            bad = over["sources"] | over["e"]
            if w is None:
                bad = bad | over["y"]
            elif over["y"].any():
                y_m = y_m.copy()
                y_m[over["y"]] = np.nan
            valid = None if not bad.any() else ~bad
        return Measurement(u=u, w=st.w, y=y_m, i_src=i_m, e=e_m, on=st.on,
                           piecewise_linear=self._piecewise_linear, valid=valid,
                           noise_v=self.spec.adc_voltage.noise_sigma(), info=info)

    def safe_state(self) -> None:
        self._last = None

    # ---- optional capabilities -------------------------------------------------------
    def linearized_response(self, x: np.ndarray, w_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Adjoint of the true (non-ideal) circuit at the operating point of ``x``: ê (B, n) V, î (B, p) A.

        Simulated-only (``hl-exact``): exact for the conductances of the last board call (under
        read noise or drift a new call would see other ones), without reading errors; with wires
        it is the adjoint of the exact terminal model.  Elements frozen as in
        :meth:`~hil.circuit.solve.EquilibriumSolver.adjoint_voltages` (clamped nodes shorted).
        """
        x = np.atleast_2d(np.asarray(x, dtype=float))
        solver = self._measured if self._measured is not None else self._solver()[0]
        st = solver.solve(self.model.sources(self._topology.source_voltages(x)), None)
        c = solver.circuit
        e_hat = solver.adjoint_voltages(st, np.atleast_2d(w_hat) @ c.g_out)
        return e_hat, -e_hat @ c.g_in

    def elapse(self, seconds: float) -> None:
        """Let simulated time pass (drift), seconds."""
        self.clock_s += float(seconds)
        self._cache = None

    def state_dict(self) -> dict:
        """Device state and dynamic random stream (arrays and strings, for npz checkpoints)."""
        return {"board_target_s": self._target.copy(), "board_g_dev_s": self._g_dev.copy(),
                "board_t_prog_s": self._t_prog.copy(), "board_clock_s": np.array(self.clock_s),
                "board_rng_state": np.array(json.dumps(self.model.state_dict())),
                "board_instance": np.array(self._instance)}

    def load_state_dict(self, state: dict) -> None:
        self._target = np.array(state["board_target_s"], dtype=float)
        self._g_dev = np.array(state["board_g_dev_s"], dtype=float)
        self._t_prog = np.array(state["board_t_prog_s"], dtype=float)
        self.clock_s = float(state["board_clock_s"])
        if "board_instance" in state and int(state["board_instance"]) != self._instance:
            self._set_instance(int(state["board_instance"]))
        self.model.load_state_dict(json.loads(str(state["board_rng_state"])))
        self._cache, self._last, self._measured = None, None, None

    def true_conductances(self) -> np.ndarray:
        """The devices' programmed conductances (S): simulator truth, for tests and benchmarks only."""
        return self._g_dev.copy()

    def true_diodes(self):
        """The spread diode bank: simulator truth, for tests only."""
        return self._diodes

    # ---- internals -------------------------------------------------------------------
    def _set_instance(self, k: int) -> None:
        """Draw board instance ``k`` of the spec's distribution (0: the board of ``seed``)."""
        c, topo = self._nominal, self._topology
        self.model = DeviceModel(self.spec, topo.n_conductances, c.n_hidden, c.n_sources, c.n_outputs,
                                 *self._bounds, instance=k)
        self._diodes = self.model.diodes(c.diodes)
        self._piecewise_linear = bool(self._diodes.law.piecewise_linear)
        self._ambiguous_states = not self._diodes.law.states_name_regions()
        self._instance = k
        self._programmed = None  # solver of this instance's diodes, reprogrammed in place

    def _write(self, g: np.ndarray) -> None:
        changed = np.flatnonzero(~(g == self._target))
        if changed.size == 0:
            return
        if self.spec.redraw == "write" and not np.all(np.isnan(self._target)):
            self._set_instance(self._instance + 1)
            changed = np.arange(g.size)
        self._g_dev[changed] = self.model.write_subset(g[changed], changed)
        self._target = g.copy()
        self._t_prog[changed] = self.clock_s
        self._cache, self._last, self._measured = None, None, None

    def _known_topology(self, effective: Circuit) -> Circuit:
        """``effective`` (a wired board's terminal circuit, rebuilt whenever the devices' conductances
        change) with the topology of the previous one when the wires coupled the same hidden-node
        pairs: its edge list and names are formed once, not at every board call."""
        pairs = effective.hh_pairs()
        known = self._effective_topology
        if known is not None and np.array_equal(known[0], pairs):
            effective._cache["topology"] = known[1]
        else:
            self._effective_topology = (pairs.copy(), effective.topology())
        return effective

    def _solver(self):
        if self._cache is not None and not self.model.dynamic_conductances:
            return self._cache
        g = self.model.seen(self._g_dev, self.clock_s - self._t_prog, read=True)
        if self._last is not None:  # other conductances: the held state stays a warm start only,
            self._last.b_src = None  # its source currents G_in·u are not reused
        if self._wire_spec is None:  # same structure: write the changed conductances only
            if self._programmed is None:
                self._programmed = EquilibriumSolver(self._nominal.with_conductances(g).with_diodes(self._diodes))
            else:
                self._programmed.program(g)
            self._cache = (self._programmed, None)
            return self._cache
        circuit = self._nominal.with_conductances(g).with_diodes(self._diodes)
        wired = None
        if self._wire_spec is not None:
            wired = apply_wires(circuit, self._wire_spec)
            self._wire_drop = max(ir_drop_estimate(circuit.g_in.T, self._wire_spec),
                                  ir_drop_estimate(circuit.g_out.T, self._wire_spec))
            circuit = self._known_topology(wired.effective)
        self._cache = (EquilibriumSolver(circuit), wired)
        return self._cache

"""ngspice export and batch runner: an independent oracle for the equilibrium solvers.

    deck = write_netlist(circuit, x)          # one logical input vector x (V)
    res = run_ngspice(deck)                   # ngspice -b, full-precision .op
    res.node_voltages["h3"], res.source_currents["Vx0"]

Element and node names are those of :meth:`Circuit.element_names` and
:attr:`Circuit.node_names` (``V<source>``, ``V<output>``, ``D<hidden>``,
``R_<a>_<b>``), i.e. the names ``hil solve --json`` uses.  ngspice lower-cases every
name; :class:`SpiceResult` maps them back to the circuit's spelling.

Sign convention (physics.md §0.2): ``source_currents[V]`` is SPICE's ``i(V)``, positive
when current enters the + terminal of the source from the circuit.  Hence the current a
source *delivers* into the network is ``-i(V)`` and the output-port current is
``y = +i(V<output>)`` (see :meth:`SpiceResult.delivered_currents`, :meth:`SpiceResult.port_currents`).

What ngspice-39 computes for a diode (level 1, read from its source; details and checks in
the project notes derived from ``dioload.c``/``diotemp.c``):

* V_T = (k/q)·T with CODATA-2014 k = 1.38064852e-23 J/K, q = 1.6021766208e-19 C,
  T = temp + 273.15 K; vte = N·V_T.
* i_j = IS·(exp(v/vte) − 1) for v ≥ −3·vte; below, the cubic tail
  i_j = −IS·(1 + (3·vte/(e·v))³) (e = Euler's number); plus ``gmin``·v across the junction
  only (``.options gmin``), never from nodes to ground in a converged ``.op``.
* RS ≠ 0 creates an internal node on the anode side: anode —RS— junction — cathode.
* IS(T) = IS·exp((T/Tnom − 1)·EG/vte + (XTI/N)·ln(T/Tnom)), unchanged when T = Tnom.

Ideal diodes are exported as a *near-ideal* SPICE diode, ``IS = NEAR_IDEAL_IS_A``
(1e-18 A) and ``N = NEAR_IDEAL_N`` (1e-10, vte ≈ 2.6e-12 V), with ``gmin = 1e-20 S``.
Its own error against the ideal (LCP) solution, for a network whose diode states have
margins larger than the bound (no degenerate diode):

* a conducting diode sits ``vte·ln(1 + I/IS)`` beyond its reference instead of at it;
  shifting clamp levels by at most δ moves every node by at most δ (the free-node
  response to clamp values is a nonnegative averaging operator with row sums ≤ 1, since
  L is an M-matrix): ≤ 2.586e-12 V × ln(1 + I_max/1e-18 A), i.e. 8.9e-11 V at
  I_max = 1 mA and 9.5e-11 V at 10 mA;
* a blocking diode leaks IS + gmin·|v| ≤ 1e-18 A + 1e-20 S·|v| into its node; the
  response is ≤ ‖L⁻¹‖_∞·(IS + gmin·V_max), e.g. ~4e-15 V for 0.3 mS node conductance and 5 V.

:func:`near_ideal_error_bound_v` evaluates this bound for a circuit.  N cannot be made
much smaller: with N = 1e-12 ngspice-39 converged silently to a wrong active set on a
300-node network (2e-5 V error) because the junction conductance (I/vte ≈ 1e12 S) swamps
its convergence tests; N = 1e-10 agreed to 9e-11 V on 100–1000-node networks.

Batch-mode facts that shaped :func:`run_ngspice` (ngspice-39.3): the exit status is 1
even after a good run (the "no .plot/.print" note), so success is judged from the
output; after every convergence aid failed ngspice falls back to a "transient op" that
can report meaningless values (0 V on floating nodes), which is treated as a failure;
``set numdgt=17`` prints 17 significant digits, enough to round-trip a double.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from hil.circuit.elements import thermal_voltage
from hil.circuit.model import GROUND, Circuit

#: Emission coefficient of the near-ideal SPICE diode used for ideal diodes (vte ≈ 2.6e-12 V).
NEAR_IDEAL_N = 1e-10
#: Saturation current of the near-ideal SPICE diode, amperes.
NEAR_IDEAL_IS_A = 1e-18
#: ``.options gmin`` for decks of ideal diodes, siemens (junction leakage ≤ 1e-20 S·|v|).
NEAR_IDEAL_GMIN_S = 1e-20

#: Element name prefix of the reference sources of diodes whose reference is not ground.
_REF_SUFFIX = "_ref"

_SPICE_NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")

#: stderr fragments that mean the operating point is not trustworthy.  A failed gmin or
#: source *stage* followed by a successful later stage is not a failure (kept in ``notes``);
#: the last resort "transient op" is.
_FAILURE_PATTERNS = (
    "error",
    "singular matrix",
    "transient op",
    "too many iterations",
    "aborted",
    "can't find",
    "could not find",
    "no convergence",
    "timestep too small",
)


class SpiceError(RuntimeError):
    """ngspice failed, did not converge, or its output lacks an expected value.

    Attributes:
        stdout, stderr: ngspice's output (for diagnosis).
    """

    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        self.stdout = stdout
        self.stderr = stderr
        tail = "\n".join(ln for ln in stderr.strip().splitlines()[-15:])
        super().__init__(message + (f"\n--- ngspice stderr (last lines) ---\n{tail}" if tail else ""))


@dataclass(frozen=True)
class SpiceOptions:
    """Tolerances written to ``.options`` (SPICE units: V, A) and print settings.

    Defaults are far tighter than SPICE's (reltol 1e-3, vntol 1e-6 V, abstol 1e-12 A):
    Newton's last step is then quadratically small and the printed operating point is
    accurate to ~1e-15 V on the networks tested (100–1000 nodes).
    """

    reltol: float = 1e-10
    abstol_a: float = 1e-16
    vntol_v: float = 1e-13
    itl1: int = 500
    numdgt: int = 17


@dataclass
class SpiceResult:
    """Operating point printed by ngspice.

    Attributes:
        node_voltages: node name (circuit spelling) → voltage w.r.t. ground, V.  Internal
            nodes of diode series resistances are not printed by ngspice and are absent.
        source_currents: voltage-source element name → SPICE ``i(V)``, A (positive into the
            + terminal from the circuit).
        elapsed_s: wall time of the ngspice subprocess, seconds.
        stdout, stderr: raw ngspice output.
        notes: convergence-aid messages ngspice printed (e.g. gmin stepping) on success.
    """

    node_voltages: dict[str, float]
    source_currents: dict[str, float]
    elapsed_s: float
    stdout: str = ""
    stderr: str = ""
    notes: list[str] = field(default_factory=list)

    def hidden_voltages(self, circuit: Circuit) -> np.ndarray:
        """(n,) hidden-node voltages in the circuit's order, V."""
        return np.array([self.node_voltages[h] for h in circuit.hidden_names])

    def delivered_currents(self, circuit: Circuit) -> np.ndarray:
        """(p,) current each source delivers into the network (= −i(V)), A; ``CircuitState.i_src``."""
        return np.array([-self.source_currents[nm] for nm in circuit.element_names()["sources"]])

    def port_currents(self, circuit: Circuit) -> np.ndarray:
        """(q,) current from the network into each output port (= +i(V)), A; ``CircuitState.y``."""
        return np.array([self.source_currents[nm] for nm in circuit.element_names()["ports"]])

    def to_solve_json(self, circuit: Circuit) -> dict[str, dict[str, float]]:
        """The ``nodes``/``sources``/``ports`` entries of a ``hil solve --json`` sample.

        Same keys and signs as the CLI: node voltages (V) by node name, current delivered by
        each source ``V<source>`` (A, = −i(V)), current into each port ``V<output>`` (A, = +i(V)).
        """
        names = circuit.element_names()
        return {
            "nodes": {nm: self.node_voltages[nm] for nm in circuit.node_names if nm != GROUND},
            "sources": {nm: -self.source_currents[nm] for nm in names["sources"]},
            "ports": {nm: self.source_currents[nm] for nm in names["ports"]},
        }


def ngspice_executable() -> str | None:
    """Path of ``ngspice`` (env ``HIL_NGSPICE`` overrides), or None if not installed."""
    exe = os.environ.get("HIL_NGSPICE") or "ngspice"
    return shutil.which(exe)


def _num(x: float) -> str:
    """A float as SPICE text: 17 significant digits, plain exponent, no suffix letters."""
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"cannot write a non-finite number ({v}) into a SPICE deck")
    return f"{v:.17g}"


def _check_names(names: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for nm in names:
        if nm == GROUND:
            continue
        if not _SPICE_NAME_RE.match(nm):
            raise ValueError(f"name {nm!r} cannot be written into a SPICE deck (use letters, digits, '_')")
        low = nm.lower()
        if low in seen and seen[low] != nm:
            raise ValueError(f"names {seen[low]!r} and {nm!r} differ only in case; ngspice lower-cases names")
        seen[low] = nm


def reference_names(circuit: Circuit) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Node and source names used for diode references that are not ground.

    Returns ``(nodes, sources)`` per hidden node: the node is ``"0"`` and the source ``""``
    when ``v_ref == 0``; otherwise node ``<hidden>_ref`` driven by source ``V<hidden>_ref``.
    """
    nodes, srcs = [], []
    for h, v in zip(circuit.hidden_names, circuit.diodes.v_ref):
        if float(v) == 0.0:
            nodes.append(GROUND)
            srcs.append("")
        else:
            nodes.append(f"{h}{_REF_SUFFIX}")
            srcs.append(f"V{h}{_REF_SUFFIX}")
    return tuple(nodes), tuple(srcs)


def write_netlist(
    circuit: Circuit,
    inputs: Sequence[float] | np.ndarray | None = None,
    *,
    u: Sequence[float] | np.ndarray | None = None,
    w: Sequence[float] | np.ndarray | None = None,
    options: SpiceOptions | None = None,
    title: str | None = None,
) -> str:
    """An ngspice deck (text) of ``circuit`` for ONE input vector, with a full-precision ``.op``.

    Args:
        circuit: a validated circuit.
        inputs: logical inputs x (n_inputs,) in volts, mapped to sources with
            :meth:`Circuit.source_voltages` (inverted copies get −x, rails their voltage).
        u: alternatively the source voltages themselves (p,), volts.  Give exactly one.
        w: output-port voltages (q,), volts; default ``circuit.output_voltage``.
        options: tolerances; default :class:`SpiceOptions`.
        title: first line of the deck; default the circuit name.

    Elements: ``V<source> <source> 0``; ``V<output> <output> 0``; one resistor
    ``R_<a>_<b> a b 1/g`` per nonzero conductance (zero conductance = open, omitted);
    ``D<hidden>`` with anode at the reference and cathode at the node for orientation +1,
    reversed for −1.  Ideal diodes use the near-ideal model of the module docstring
    (error bound: :func:`near_ideal_error_bound_v`); Shockley diodes get IS, N, RS, TNOM,
    XTI, EG, one ``.model`` per distinct (IS, N, RS).  ``.options`` sets ``temp``/``tnom``
    from the diode bank (°C) and ``gmin`` from ``diodes.gmin_s``.
    """
    c = circuit
    opts = options or SpiceOptions()
    if (inputs is None) == (u is None):
        raise ValueError("give exactly one of inputs (logical x) or u (source voltages)")
    if u is None:
        u_vec = c.source_voltages(np.asarray(inputs, dtype=float).reshape(1, -1))[0]
    else:
        u_vec = np.asarray(u, dtype=float).reshape(-1)
        if u_vec.shape != (c.n_sources,):
            raise ValueError(f"expected {c.n_sources} source voltages, got shape {u_vec.shape}")
    w_vec = np.asarray(c.output_voltage if w is None else w, dtype=float).reshape(-1)
    if w_vec.shape != (c.n_outputs,):
        raise ValueError(f"expected {c.n_outputs} output-port voltages, got shape {w_vec.shape}")
    ref_nodes, ref_srcs = reference_names(c)
    names = c.element_names()
    all_nodes = list(c.node_names) + [r for r in ref_nodes if r != GROUND]
    _check_names(all_nodes)
    _check_names(list(names["sources"]) + list(names["ports"]) + [s for s in ref_srcs if s])
    _check_names(list(names["diodes"]))
    if len(set(n.lower() for n in all_nodes)) != len(all_nodes):
        raise ValueError("diode reference node names collide with circuit node names")

    d = c.diodes
    lines: list[str] = [f"* {title or c.name}: resistor-diode network, written by hil.circuit.spice"]
    lines.append(f"* {c.n_sources} sources, {c.n_hidden} hidden nodes ({d.kind} diodes), {c.n_outputs} output ports")
    lines.append("* sources")
    for nm, node, val in zip(names["sources"], c.source_names, u_vec):
        lines.append(f"{nm} {node} 0 {_num(val)}")
    for nm, node, val in zip(names["ports"], c.output_names, w_vec):
        lines.append(f"{nm} {node} 0 {_num(val)}")
    for src, node, val in zip(ref_srcs, ref_nodes, d.v_ref):
        if src:
            lines.append(f"{src} {node} 0 {_num(val)}")
    lines.append("* resistors (one per nonzero conductance, R = 1/g ohm)")
    topo = c.topology()
    g = c.conductance_vector()
    node_names = topo.node_names
    for (a, b), nm, gk in zip(topo.edges, topo.edge_names, g):
        if gk > 0:
            lines.append(f"{nm} {node_names[a]} {node_names[b]} {_num(1.0 / gk)}")
    if d.element is not None:  # a registry element writes its own SPICE form
        lines += _element_lines(c, names["diodes"])
    else:
        lines.append("* diodes (anode first)" if not d.is_linear else "* no diodes (linear network)")
    models: dict[tuple[float, float, float], str] = {}
    for k, (dn, h) in enumerate(zip(names["diodes"], c.hidden_names)):
        if d.is_linear or d.element is not None:
            break
        ref = ref_nodes[k]
        anode, cathode = (ref, h) if d.orientation[k] > 0 else (h, ref)
        if d.is_ideal:
            key = (NEAR_IDEAL_IS_A, NEAR_IDEAL_N, 0.0)
        else:
            key = (float(d.i_s[k]), float(d.n[k]), float(d.r_s[k]))
        mname = models.setdefault(key, f"DM{len(models)}")
        lines.append(f"{dn} {anode} {cathode} {mname}")
    for (i_s, n_em, r_s), mname in models.items():
        par = f"IS={_num(i_s)} N={_num(n_em)}"
        if r_s > 0:
            par += f" RS={_num(r_s)}"
        if not d.is_ideal:
            par += f" TNOM={_num(d.tnom_c)} XTI={_num(d.xti)} EG={_num(d.eg_ev)}"
        lines.append(f".model {mname} D({par})")
    gmin = NEAR_IDEAL_GMIN_S if d.is_ideal or d.is_linear else float(d.gmin_s)
    tnom = d.tnom_c if d.kind == "shockley" else d.temperature_c
    if d.element is not None:
        eo = d.element.spice_options()
        gmin, tnom = float(eo.get("gmin", NEAR_IDEAL_GMIN_S)), float(eo.get("tnom", d.temperature_c))
    lines.append(
        f".options reltol={_num(opts.reltol)} abstol={_num(opts.abstol_a)} vntol={_num(opts.vntol_v)} "
        f"gmin={_num(gmin)} temp={_num(d.temperature_c)} tnom={_num(tnom)} itl1={int(opts.itl1)}"
    )
    lines += [
        ".control",
        f"set numdgt={int(opts.numdgt)}",
        "op",
        "echo HIL_SPICE_BEGIN",
        "print all",
        "echo HIL_SPICE_END",
        ".endc",
        ".end",
    ]
    return "\n".join(lines) + "\n"


def _element_lines(c: Circuit, tags: Sequence[str]) -> list[str]:
    """Deck lines of a registry element at every hidden node, then its ``.model`` cards."""
    el = c.diodes.element
    lines = [f"* node elements: {el.name}"]
    models: dict[str, str] = {}
    for k, (tag, node) in enumerate(zip(tags, c.hidden_names)):
        body, mods = el.spice(k, node, tag[1:] if tag.upper().startswith("D") else tag)
        lines += body
        models.update(mods)
    lines += [f".model {name} {par}" for name, par in models.items()]
    return lines


def _deck_names(deck: str) -> tuple[dict[str, str], dict[str, str]]:
    """Expected nodes and voltage sources of a deck: lower-case name → spelling in the deck."""
    nodes: dict[str, str] = {}
    vsrc: dict[str, str] = {}
    in_control = False
    for raw in deck.splitlines()[1:]:
        line = raw.strip()
        if not line or line[0] in "*;":
            continue
        low = line.lower()
        if low.startswith(".control"):
            in_control = True
            continue
        if low.startswith(".endc"):
            in_control = False
            continue
        if in_control or line[0] == ".":
            continue
        tok = line.split()
        kind = tok[0][0].upper()
        if kind in "VRD" and len(tok) >= 3:
            for nd in tok[1:3]:
                if nd != GROUND:
                    nodes.setdefault(nd.lower(), nd)
            if kind == "V":
                vsrc[tok[0].lower()] = tok[0]
    return nodes, vsrc


_VALUE_RE = re.compile(r"^\s*(\S+)\s*=\s*([-+0-9.eEinfaINFA]+)\s*$")


def parse_print_all(stdout: str) -> dict[str, float]:
    """Values printed between the HIL_SPICE_BEGIN/END markers (``name = value`` lines), lower-case names."""
    vals: dict[str, float] = {}
    inside = False
    for line in stdout.splitlines():
        s = line.strip()
        if s == "HIL_SPICE_BEGIN":
            inside = True
            continue
        if s == "HIL_SPICE_END":
            break
        if inside:
            m = _VALUE_RE.match(line)
            if m:
                vals[m.group(1).lower()] = float(m.group(2))
    return vals


def run_ngspice(deck: str, *, executable: str | None = None, timeout_s: float = 900.0) -> SpiceResult:
    """Run ``ngspice -b`` on ``deck`` (as written by :func:`write_netlist`) in a temp directory.

    Returns every node voltage (V) and voltage-source current (A, SPICE sign) of the
    deck.  Raises :class:`SpiceError` with ngspice's message when ngspice is missing, fails,
    reports a non-convergence or a fallback to "transient op", prints a non-finite value,
    or omits any node or source of the deck.
    """
    exe = executable or ngspice_executable()
    if exe is None:
        raise SpiceError("ngspice not found on PATH (set HIL_NGSPICE to its path)")
    nodes, vsrc = _deck_names(deck)
    with tempfile.TemporaryDirectory(prefix="hil_spice_") as tmp:
        path = os.path.join(tmp, "circuit.cir")
        with open(path, "w", encoding="ascii") as fh:
            fh.write(deck)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [exe, "-b", path], capture_output=True, text=True, cwd=tmp, timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise SpiceError(f"ngspice did not finish within {timeout_s:.0f} s") from exc
        elapsed = time.perf_counter() - t0
    out, err = proc.stdout, proc.stderr
    if proc.returncode < 0:
        raise SpiceError(f"ngspice was killed by signal {-proc.returncode}", out, err)
    err_lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    bad = [ln for ln in err_lines if any(p in ln.lower() for p in _FAILURE_PATTERNS)]
    if bad:
        raise SpiceError(f"ngspice reported a failure: {bad[0]}", out, err)
    vals = parse_print_all(out)
    if not vals:
        raise SpiceError("ngspice printed no operating point (did .op run?)", out, err)
    missing = [nm for nm in nodes if nm not in vals]
    missing += [nm for nm in vsrc if f"{nm}#branch" not in vals]
    if missing:
        raise SpiceError(f"ngspice output lacks {len(missing)} expected value(s), e.g. {missing[:5]}", out, err)
    node_v = {nodes[k]: vals[k] for k in nodes}
    src_i = {vsrc[k]: vals[f"{k}#branch"] for k in vsrc}
    nonfinite = [k for k, v in list(node_v.items()) + list(src_i.items()) if not math.isfinite(v)]
    if nonfinite:
        raise SpiceError(f"ngspice printed non-finite values for {nonfinite[:5]}", out, err)
    notes = [ln for ln in err_lines if ln.lower().startswith(("note:", "warning:")) and "no simulations run" not in ln.lower()]
    return SpiceResult(node_v, src_i, elapsed, out, err, notes)


def simulate(circuit: Circuit, inputs=None, *, u=None, w=None, options: SpiceOptions | None = None) -> SpiceResult:
    """:func:`write_netlist` then :func:`run_ngspice` for one input vector."""
    return run_ngspice(write_netlist(circuit, inputs, u=u, w=w, options=options))


def near_ideal_error_bound_v(circuit: Circuit, max_diode_current_a: float, max_abs_voltage_v: float) -> float:
    """Bound (V) on |e_spice − e_ideal| caused by the near-ideal SPICE diode model.

    ``max_diode_current_a``: largest forward diode current of the ideal solution (A);
    ``max_abs_voltage_v``: largest |voltage| across a blocking diode (V).  Valid when every
    diode's state margin exceeds the bound (no diode changes state).  The forward-drop
    term is attained at the diode carrying ``max_diode_current_a``, so the bound is sharp;
    it includes a float64 rounding allowance.  See the module docstring.
    """
    vte = NEAR_IDEAL_N * thermal_voltage(circuit.diodes.temperature_c, spice_compat=True)
    drop = vte * math.log1p(max(max_diode_current_a, 0.0) / NEAR_IDEAL_IS_A)
    from scipy.sparse.linalg import spsolve

    # ‖L⁻¹‖∞ = max(L⁻¹·1): L is an M-matrix, so L⁻¹ ≥ 0 entrywise (sparse solve, no n × n array)
    inv_norm = float(np.max(np.atleast_1d(spsolve(circuit.laplacian_sparse(), np.ones(circuit.n_hidden)))))
    leak = inv_norm * (NEAR_IDEAL_IS_A + NEAR_IDEAL_GMIN_S * max_abs_voltage_v)
    # The drop bound is attained at the diode with the largest current, so allow for
    # float64 rounding of both solutions (16 ulp of the voltage scale) and 1e-6 relative.
    rounding = 16.0 * np.finfo(float).eps * max(max_abs_voltage_v, 1.0)
    return (drop + leak) * (1.0 + 1e-6) + rounding

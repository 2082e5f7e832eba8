"""ngspice deck of a buffered cascade: every stage's circuit, buffers as voltage-controlled sources.

Stage s's nodes and elements are prefixed ``s<k>_``.  The input sources of stage s > 0 become
E sources (VCVS, gain ±A) controlled by the buffered hidden node of stage s−1 and ground, which
is what an ideal voltage follower is: no current drawn from the controlling node, any current
supplied to the driven one.  Rails stay V sources.  All stages must share their ``.options``
line (same gmin and temperatures), because SPICE options are global.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hil.circuit.spice import SpiceOptions, write_netlist


def _prefixed(circuit, prefix: str):
    srcs = tuple(replace(s, name=f"{prefix}{s.name}") for s in circuit.sources)
    return replace(circuit, sources=srcs, hidden_names=tuple(prefix + h for h in circuit.hidden_names),
                   output_names=tuple(prefix + o for o in circuit.output_names), _cache={})


def write_cascade_netlist(board, x, options: SpiceOptions | None = None) -> str:
    """One deck (text) for a :class:`~hil.boards.cascade.CascadeBoard` and ONE input vector x (V)."""
    x = np.asarray(x, dtype=float).reshape(1, -1)
    xs = board.stage_inputs(x)
    body: list[str] = []
    models: dict[str, str] = {}
    tail: list[str] | None = None
    prev_hidden: tuple[str, ...] = ()
    for s, st in enumerate(board.stages):
        c = _prefixed(st.circuit, f"s{s}_")
        lines = write_netlist(c, xs[s][0], options=options).splitlines()
        opt_at = next(i for i, ln in enumerate(lines) if ln.startswith(".options"))
        stage_tail = lines[opt_at:]
        if tail is None:
            tail = stage_tail
        elif stage_tail[0] != tail[0]:
            raise ValueError(f"stage {s}: SPICE options differ from stage 0 ({stage_tail[0]!r} vs {tail[0]!r}); "
                             "options are global in SPICE")
        body.append(f"* ---- stage {s} ----")
        names = c.element_names()["sources"]
        for ln in lines[1:opt_at]:
            tok = ln.split()
            if ln.startswith(".model"):
                name = f"S{s}{tok[1]}"
                models[name] = " ".join(tok[2:])
                continue
            if s and tok and tok[0] in names:  # a buffered input: E source controlled by stage s-1
                src = c.sources[names.index(tok[0])]
                if src.kind != "rail":
                    link = board.links[s - 1]
                    ctrl = prev_hidden[int(link.buffered[src.index])]
                    sign = -1.0 if src.kind == "inverted" else 1.0
                    body.append(f"E{tok[0][1:]} {tok[1]} 0 {ctrl} 0 {sign * link.gain:.17g}")
                    continue
            if tok and tok[0][0].upper() == "D" and len(tok) >= 4:
                tok[3] = f"S{s}{tok[3]}"
                ln = " ".join(tok)
            body.append(ln)
        prev_hidden = c.hidden_names
    title = "* buffered cascade of resistor-element stages, written by hil.circuit.spice_cascade"
    return "\n".join([title] + body + [f".model {k} {v}" for k, v in models.items()] + (tail or [])) + "\n"

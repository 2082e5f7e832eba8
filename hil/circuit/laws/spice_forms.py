"""Shared SPICE building blocks of the element modules (numbers written with 17 digits)."""

from __future__ import annotations

#: Near-ideal SPICE diode standing in for an ideal diode (forward drop ≈ 1e-10 V at 1 mA).
NEAR_IDEAL_IS_A = 1e-18
NEAR_IDEAL_N = 1e-10


def num(x: float) -> str:
    """A float written for SPICE: plain exponent, 17 significant digits (never repr)."""
    return f"{float(x):.17g}"


def reference_node(node: str, suffix: str, v: float) -> tuple[list[str], str]:
    """A reference potential for an element at ``node``: ground, or a new node driven by a source."""
    if v == 0.0:
        return [], "0"
    ref = f"{node}_{suffix}"
    return [f"V{ref} {ref} 0 {num(v)}"], ref


def near_ideal_diode() -> dict[str, str]:
    return {"DIDEAL": f"D(IS={num(NEAR_IDEAL_IS_A)} N={num(NEAR_IDEAL_N)})"}

"""Solve reports and the error raised when an equilibrium solve does not converge."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SolveReport:
    """Evidence that an equilibrium solve converged (or why it did not).

    Attributes:
        converged: every sample of the batch met every tolerance.
        method: stage path, e.g. ``"pdas"``, ``"pdas→pr→pdas"``, ``"newton→gmin"``.
        iterations: iterations per stage (maximum over the batch).
        batch: number of input vectors solved.
        max_step_v: largest voltage update in the last iteration, volts.
        kcl_residual_a: largest KCL residual over nodes and samples, amperes.
        kcl_residual_rel: the same relative to the current scale (largest nodal current).
        kkt_primal, kkt_dual, kkt_complementarity: scaled KKT residuals (ideal diodes).
        n_on_mean: mean number of conducting diodes per sample.
        degenerate: diodes at a kink (zero voltage margin and zero current), all samples.
        min_margin: smallest scaled state margin max(z, mu) over diodes and samples.
        error_bound_v: a-posteriori bound ||e - e*||_2 <= ||r||_2 / lambda_min(L), volts.
        wall_time_s: wall-clock time of the solve, seconds.
        failed_samples: indices of samples that did not converge (empty when converged).
    """

    converged: bool
    method: str
    iterations: dict[str, int] = field(default_factory=dict)
    batch: int = 0
    max_step_v: float = 0.0
    kcl_residual_a: float = 0.0
    kcl_residual_rel: float = 0.0
    kkt_primal: float | None = None
    kkt_dual: float | None = None
    kkt_complementarity: float | None = None
    n_on_mean: float = 0.0
    degenerate: int = 0
    min_margin: float | None = None
    error_bound_v: float | None = None
    wall_time_s: float = 0.0
    failed_samples: list[int] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        its = ", ".join(f"{k} {v}" for k, v in self.iterations.items())
        status = "converged" if self.converged else "NOT converged"
        return (
            f"{status} via {self.method} ({its}); batch {self.batch}; "
            f"KCL residual {self.kcl_residual_a:.2e} A ({self.kcl_residual_rel:.1e} rel); "
            f"{self.wall_time_s * 1e3:.1f} ms"
        )


class SolveError(RuntimeError):
    """Raised when a solver cannot certify its answer; ``report`` says how far it got."""

    def __init__(self, message: str, report: SolveReport):
        self.report = report
        super().__init__(f"{message}\n  report: {report.summary()}" + (f"\n  note: {report.note}" if report.note else ""))


def certificate_note(worst: float, tol: float) -> str:
    """Why a certificate was refused, in words: its value against the tolerance, and for a non-finite
    one the usual cause (a floating node: no conductance path to a fixed potential)."""
    note = f"KKT certificate {worst:.2e} exceeds tolerance {tol:.0e}"
    if not worst < float("inf"):
        note += (" (non-finite node voltages: a hidden node, or group of coupled nodes, without any conductance "
                 "to a source, rail, output port or ground floats and has no unique equilibrium)")
    return note

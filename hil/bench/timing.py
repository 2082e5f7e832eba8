"""The bench-time model: predicted time per training step, per epoch and per run.

One run of the bench (a sweep) applies ``n`` list points; at each point every SMU waits its
source delay (plus the board's extra settling time) and integrates, while the scanner scans its
hidden-node channels one after another::

    t_point = settle_s + source_delay_s + max(t_smu, t_scan)
    t_smu   = a_az · NPLC / f_line + t_list_overhead               (all SMU channels in parallel)
    t_scan  = n_channels · (t_channel + a_az · NPLC / f_line + scan_delay_s)
    t_sweep = n · t_point + n_exchanges · t_round_trip

with ``a_az`` = 1 for autozero off/once and ``AUTOZERO_ON_FACTOR`` for autozero on.  The
number of points comes from the real lists: the model builds the training batches and their
ramp points exactly as the board does.  Programming is estimated separately from the write-verify
settings and an assumed number of pulses per touched device (it depends on the devices).

The per-instrument figures are the typical values of the vendors' data sheets (list-sweep
overhead per point, relay time per scanner channel, remote round trip); a bench file's instrument
options ``relay_s`` (DAQ970A, per scanned channel) and ``relay_time_s`` (707B) replace them, for the
estimate and the emulators alike.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InstrumentFigures", "FIGURES", "FIGURE_OPTIONS", "instrument_figures", "TimingModel", "program_step_s",
           "AUTOZERO_ON_FACTOR"]

AUTOZERO_ON_FACTOR = 2.0


@dataclass(frozen=True)
class InstrumentFigures:
    """Typical timing figures of one instrument family, s.

    Attributes:
        list_point_overhead_s: overhead per point inside a list sweep (trigger model), s.
        round_trip_s: one remote command exchange (LAN/GPIB), s.
        channel_s: scanner: relay switch and settle per channel (without the integration), s.
        relay_s: matrix: one relay operation including settling, s.
    """

    list_point_overhead_s: float = 1e-4
    round_trip_s: float = 1e-3
    channel_s: float = 0.0
    relay_s: float = 0.0


FIGURES: dict[str, InstrumentFigures] = {
    "keithley2600": InstrumentFigures(list_point_overhead_s=1e-4, round_trip_s=1e-3),
    "keithley2450": InstrumentFigures(list_point_overhead_s=2e-4, round_trip_s=1e-3),
    "keysight_b2900": InstrumentFigures(list_point_overhead_s=1e-4, round_trip_s=1e-3),
    # DAQ970A scanning the solid-state DAQM900A multiplexer: 450 channels/s published scan rate, i.e.
    # 1/450 s ≈ 2.2 ms per channel (the armature DAQM901A: 80 channels/s, 12.5 ms; set relay_s)
    "daq970a": InstrumentFigures(round_trip_s=1e-3, channel_s=2.2e-3),
    "keithley707b": InstrumentFigures(round_trip_s=1e-3, relay_s=3e-3),
}

#: bench-file instrument options that replace a family figure (the emulators read the same options)
FIGURE_OPTIONS: dict[str, dict[str, str]] = {
    "daq970a": {"relay_s": "channel_s"},
    "keithley707b": {"relay_time_s": "relay_s"},
}


def instrument_figures(driver: str, options: dict | None = None) -> InstrumentFigures:
    """The figures of one bench instrument: its family's (``FIGURES``), with any of the bench file's
    options listed in ``FIGURE_OPTIONS`` (e.g. a DAQ970A's ``relay_s`` for another multiplexer module)."""
    from dataclasses import replace

    figures = FIGURES.get(driver, InstrumentFigures())
    changes = {field: float(options[key]) for key, field in FIGURE_OPTIONS.get(driver, {}).items()
               if options and key in options}
    return replace(figures, **changes) if changes else figures


@dataclass
class TimingModel:
    """Bench timing as the model sees it.

    Args:
        line_frequency_hz: mains frequency, Hz.
        smu_nplc, smu_autozero: SMU integration (the slowest SMU channel counts).
        source_delay_s, settle_s: per point, s.
        scan_channels: hidden nodes per scanner (each scanner scans in parallel with the others).
        scan_nplc, scan_autozero, scan_delay_s: scanner integration and channel delay.
        smu_figures, scanner_figures: per-instrument figures (one entry per instrument).
        exchanges_per_sweep: remote exchanges around one sweep (uploads, trigger set-up, fetches,
            error-queue checks), counted by the board.
    """

    line_frequency_hz: float
    smu_nplc: float
    smu_autozero: str
    source_delay_s: float
    settle_s: float
    scan_channels: list
    scan_nplc: float
    scan_autozero: str
    scan_delay_s: float
    smu_figures: list
    scanner_figures: list
    exchanges_per_sweep: int

    def _az(self, mode: str) -> float:
        return AUTOZERO_ON_FACTOR if mode == "on" else 1.0

    def t_smu_s(self) -> float:
        over = max((f.list_point_overhead_s for f in self.smu_figures), default=0.0)
        return self._az(self.smu_autozero) * self.smu_nplc / self.line_frequency_hz + over

    def t_scan_s(self) -> float:
        t_int = self._az(self.scan_autozero) * self.scan_nplc / self.line_frequency_hz
        return max((n * (f.channel_s + t_int + self.scan_delay_s)
                    for n, f in zip(self.scan_channels, self.scanner_figures)), default=0.0)

    def t_point_s(self) -> float:
        return self.settle_s + self.source_delay_s + max(self.t_smu_s(), self.t_scan_s())

    def sweep_s(self, points: float) -> float:
        rt = max((f.round_trip_s for f in self.smu_figures + self.scanner_figures), default=0.0)
        return points * self.t_point_s() + self.exchanges_per_sweep * rt


def program_step_s(n_devices_touched: float, pulses_per_device: float, reads: int, width_s: float,
                   smu: InstrumentFigures, matrix: InstrumentFigures, t_read_s: float) -> float:
    """Write-verify time for one training step, s: per touched device two relay operations,
    (1 + pulses) verify reads and the pulses themselves, each a remote exchange."""
    per_read = reads * (t_read_s + smu.round_trip_s) + 2 * smu.round_trip_s  # level to v_read and back
    per_device = 2 * (matrix.relay_s + matrix.round_trip_s) + (1 + pulses_per_device) * per_read \
        + pulses_per_device * (width_s + smu.round_trip_s)
    return n_devices_touched * per_device

"""The model a bench file names reaches the driver: a shutdown before ``connect()`` addresses only
the channels that model has, and an instrument of another model at the address is refused.

Proven from what the emulated instrument received (127.0.0.1, short timeouts).
"""

from __future__ import annotations

import time

import pytest

from hil.bench.instruments import make_driver
from hil.drivers.errors import InstrumentProtocolError
from hil.drivers.transport import ResourceManagers
from hil.emulate.bench import EmulatedBench

LIMITS = {"v_min": -1.0, "v_max": 1.0, "i_compliance_a": 1.0e-3, "current_range_a": 1.0e-3, "max_step_v": 0.25,
          "max_slew_v_per_s": 1000.0, "max_power_w": None}


def bench_mapping(model: str) -> dict:
    """A 2600B SourceMeter of ``model`` holding the outputs of a one-input circuit."""
    return {"bench": {
        "name": "one-smu", "line_frequency_hz": 50, "seed": 0,
        "timing": {"nplc": 0.1, "source_delay_s": 1.0e-3, "autozero": "off"},
        "circuit": {"name": "tiny", "seed": 0,
                    "inputs": {"count": 1, "inverted": False, "rails": {}},
                    "hidden": {"count": 1, "element": {"model": "ideal"}},
                    "outputs": {"count": 1, "voltage": 0.0, "differential": False},
                    "conductances": {"g_in": 1.0e-5, "g_hh": "none", "g_leak": 1.0e-8, "g_out": 1.0e-5}},
        "instruments": {"smu": {"driver": "keithley2600", "model": model, "resource": "TCPIP::192.0.2.1::5025::SOCKET",
                                "timeout_s": 1.0, "channels": {"a": dict(LIMITS)}}},
        "wiring": {"sources": {"x0": "smu.a"}},
    }}


def test_shutdown_before_connect_addresses_only_the_models_channels():
    """Ctrl-C while the board is still opening other instruments: the shutdown of a 2601B that was
    never identified must not address ``smub`` (a 2601B has none: every such line is an error and a
    silent query, i.e. a timeout per line)."""
    with EmulatedBench(bench_mapping("2601B")) as bench, ResourceManagers() as rms:
        emu = bench.emulators["smu"]
        smu = make_driver(bench.loopback_bench.instruments["smu"], rms)
        try:
            t0 = time.monotonic()
            report = smu.safe_shutdown()
            took_s = time.monotonic() - t0
        finally:
            smu.close()
        bench.settle()
        received = emu.transcript.received()
        assert received, "the shutdown sent nothing"
        assert not [line for line in received if "smub" in line], emu.transcript.dump()
        assert not emu.transcript.entries("error"), emu.transcript.dump()
        assert report.safe, report.summary()
        assert took_s < 1.0
        assert bench.all_outputs_safe()


def test_an_instrument_of_another_model_than_the_bench_file_names_is_refused():
    """The bench file says 2601B; a 2602B answers at that address: connect refuses it after the
    identity, and nothing is switched on."""
    with EmulatedBench(bench_mapping("2602B")) as bench, ResourceManagers() as rms:
        emu = bench.emulators["smu"]
        spec = bench.loopback_bench.instruments["smu"]
        import dataclasses

        smu = make_driver(dataclasses.replace(spec, model="2601B"), rms)
        with pytest.raises(InstrumentProtocolError, match="2601B"):
            smu.connect()
        smu.close()
        bench.settle()
        assert not [line for line in emu.transcript.received() if "output" in line and "=" in line]
        assert bench.all_outputs_safe()

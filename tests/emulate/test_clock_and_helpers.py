"""Bench clock modes and the bench → driver helper."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from hil.bench.instruments import driver_kwargs
from hil.bench.schema import bench_root, load_bench
from hil.config import ConfigError
from hil.drivers.errors import InstrumentConfigError
from hil.emulate.clock import BenchClock


def test_clock_modes():
    slept = []
    clock = BenchClock("realtime", 0.5, sleep=slept.append)
    assert clock.advance(0.2) == pytest.approx(0.2)
    assert clock.advance(-1.0) == pytest.approx(0.2)     # negative durations are ignored
    assert slept == [pytest.approx(0.1)]
    instant = BenchClock("instant", sleep=slept.append)
    instant.advance(3.0)
    assert instant.now_s == 3.0 and len(slept) == 1       # instant/virtual never sleep
    parsed = BenchClock.parse("realtime(0.25)")
    assert parsed.mode == "realtime" and parsed.scale == 0.25
    with pytest.raises(ValueError, match="time mode"):
        BenchClock("fast")


def test_driver_kwargs_from_the_bench():
    bench = load_bench("scpi-xor")
    smu = driver_kwargs(bench.instruments["smu_x"])
    assert set(smu["configs"]) == {"1", "2"} and smu["configs"]["1"].limits.max_step_v == 0.25
    daq = driver_kwargs(bench.instruments["daq"])
    assert daq["scan"]["channels"] == list(range(101, 109)) and daq["slots"] == {1: 20}
    raw = copy.deepcopy(yaml.safe_load((bench_root() / "scpi-xor.yaml").read_text()))
    raw["bench"]["instruments"]["daq"]["channels"]["103"] = {"range_v": 1.0}
    with pytest.raises(ConfigError, match="bench.instruments.daq: every scanned channel needs the same range_v"):
        load_bench(raw)  # the bench file is refused when read, with the instrument's path
    spec = bench.instruments["daq"]
    odd = dataclasses.replace(spec.channels["103"], settings={**spec.channels["103"].settings, "range_v": 1.0})
    with pytest.raises(InstrumentConfigError, match="same range_v"):
        driver_kwargs(dataclasses.replace(spec, channels={**spec.channels, "103": odd}))

"""The bench option ``input_impedance`` of a scanner reaches the instrument: ``10M`` leaves the DMM
at 10 MΩ (``INP:IMP:AUTO OFF``), ``high`` (the default) selects > 10 GΩ; it used to be accepted and
ignored (every scan went out with ``INP:IMP:AUTO ON``)."""

import pytest
import yaml

from hil.bench.instruments import make_driver
from hil.bench.schema import bench_root
from hil.drivers.transport import ResourceManagers
from hil.emulate.bench import EmulatedBench


@pytest.mark.parametrize("option, expected", [(None, "ON"), ("high", "ON"), ("10M", "OFF")])
def test_scanner_input_impedance_option_reaches_the_instrument(option, expected):
    raw = yaml.safe_load((bench_root() / "scpi-xor.yaml").read_text())
    if option is not None:
        raw["bench"]["instruments"]["daq"]["input_impedance"] = option
    with EmulatedBench(raw, time_mode="virtual") as bench, ResourceManagers() as rms:
        with make_driver(bench.loopback_bench.instruments["daq"], rms) as daq:
            daq.configure_scan([101, 102], nplc=1, range_v=10, autozero="off", delay_s=0.002)
            assert daq.snapshot()["settings"]["scan"]["input_impedance"] == (">10 GOhm" if expected == "ON" else "10 MOhm")
        bench.settle()
        sent = [line for line in bench.emulators["daq"].transcript.received() if line.startswith("INP:IMP:AUTO")]
    assert sent and all(line.startswith(f"INP:IMP:AUTO {expected},") for line in sent), sent

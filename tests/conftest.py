"""Shared pytest configuration: hardware option/marker and VISA fixtures.

Hardware tests
--------------
Mark a test ``@pytest.mark.hardware("smu")`` (the argument names the resources it needs) and run

    pytest tests/drivers/test_hardware.py --resource smu=TCPIP::192.168.10.21::5025::SOCKET

``--resource NAME=VISA_ADDRESS`` is repeatable; ``--visa-library`` picks the backend (default
``@py``). Without the named resources the test is skipped and the reason names the option.
The ``open_instrument`` fixture connects a registered driver and, at teardown (also after a
failure), runs ``safe_shutdown()`` and asserts an empty error queue, every output off and no
closed relays.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.drivers.errors import InstrumentConfigError
from hil.drivers.protocols import SourceMeter, SwitchMatrix
from hil.drivers.registry import load_driver
from hil.drivers.transport import ResourceManagers, VisaTransport, parse_resource_name, validate_visa_library

pytest_plugins = ["hil.emulate.pytest_plugin"]  # emulated_bench fixtures (tests/emulate)

_RESOURCES_KEY = pytest.StashKey[dict]()
SIM_DIR = Path(__file__).resolve().parent.parent / "drivers" / "sim"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil hardware")
    group.addoption(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=VISA_ADDRESS",
        help="real instrument for hardware tests, e.g. smu=TCPIP::10.0.0.5::5025::SOCKET (repeatable)",
    )
    group.addoption(
        "--visa-library",
        default="@py",
        help="VISA library for hardware tests: @py (default), @ivi or a library path",
    )


def _parse_resources(config: pytest.Config) -> dict[str, str]:
    resources: dict[str, str] = {}
    for item in config.getoption("--resource"):
        name, sep, address = item.partition("=")
        if not sep or not name.strip() or not address.strip():
            raise pytest.UsageError(f"--resource expects NAME=VISA_ADDRESS, got {item!r}")
        try:
            resources[name.strip()] = parse_resource_name(address.strip(), instrument=name.strip())
        except InstrumentConfigError as exc:
            raise pytest.UsageError(f"--resource {item!r}: {exc}") from exc
    return resources


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESOURCES_KEY] = _parse_resources(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    given = config.stash[_RESOURCES_KEY]
    for item in items:
        marker = item.get_closest_marker("hardware")
        if marker is None:
            continue
        needed = [str(a) for a in marker.args]
        if not needed:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.hardware needs the resource names it uses")
        missing = [n for n in needed if n not in given]
        if missing:
            hint = " ".join(f"--resource {n}=<VISA address>" for n in missing)
            item.add_marker(pytest.mark.skip(reason=f"hardware test: give {hint}"))


@pytest.fixture(scope="session")
def hardware_resources(pytestconfig: pytest.Config) -> dict[str, str]:
    """``{name: normalised VISA address}`` from ``--resource``."""
    return dict(pytestconfig.stash[_RESOURCES_KEY])


@pytest.fixture(scope="session")
def visa_managers() -> Iterator[ResourceManagers]:
    """One ResourceManager per backend for the whole session, closed last."""
    managers = ResourceManagers()
    yield managers
    managers.close_all()


@pytest.fixture
def sim_managers(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """Factory: ``sim_managers("keithley2450.yaml")`` → ResourceManager on a private copy.

    pyvisa-sim caches one backend (with its state) per YAML path for the whole process, so each
    test gets its own copy; the managers are closed at teardown (fine for sim only).
    """
    managers = ResourceManagers()

    def factory(yaml_name: str) -> Any:
        copy = tmp_path / yaml_name
        shutil.copyfile(SIM_DIR / yaml_name, copy)
        return managers.get(f"{copy}@sim")

    yield factory
    managers.close_all()


def assert_instrument_safe(driver: Any, pre_shutdown_errors: list) -> None:
    """Teardown check: no errors before or during shutdown, every output off, no closed relays."""
    problems = []
    entries = list(pre_shutdown_errors) + list(getattr(driver, "shutdown_errors", [])) + driver.drain_errors()
    if entries:
        problems.append(f"error queue not empty: {entries}")
    if isinstance(driver, SourceMeter):
        on = [ch for ch in driver.channels if driver.output_enabled(ch)]
        if on:
            problems.append(f"outputs still on: {on}")
    if isinstance(driver, SwitchMatrix):
        closed = driver.closed()
        if closed:
            problems.append(f"relays still closed: {sorted(closed)}")
    assert not problems, f"{driver.name}: " + "; ".join(problems)


@pytest.fixture
def open_instrument(
    hardware_resources: dict[str, str], visa_managers: ResourceManagers, pytestconfig: pytest.Config
) -> Iterator[Callable[..., Any]]:
    """Factory: ``open_instrument("smu", "keithley2450", **driver_kwargs)`` → connected driver.

    Teardown (also after failures): drain the queue, ``safe_shutdown()``, then
    ``assert_instrument_safe`` (no errors before or during shutdown, outputs off, relays open), close.
    """
    library = validate_visa_library(pytestconfig.getoption("--visa-library"))
    opened: list[Any] = []

    def factory(resource: str, driver: str, *, timeout_s: float = 5.0, **kwargs: Any) -> Any:
        transport = VisaTransport(visa_managers.get(library), hardware_resources[resource], name=resource,
                                  timeout_s=timeout_s)
        instrument = load_driver(driver)(transport, **kwargs)
        opened.append(instrument)
        instrument.connect()
        return instrument

    yield factory
    failures = []
    for instrument in reversed(opened):
        try:
            before = instrument.drain_errors()
        except Exception as exc:  # a dead instrument must not stop the others' shutdown
            before = [("drain failed", repr(exc))]
        instrument.safe_shutdown()
        try:
            assert_instrument_safe(instrument, before)
        except AssertionError as exc:
            failures.append(str(exc))
        finally:
            instrument.close()
    assert not failures, "; ".join(failures)

"""pytest fixtures for running instruments in CI: an emulated bench is one fixture, not a lab.

Enable in your ``conftest.py`` (top level)::

    pytest_plugins = ["hil.emulate.pytest_plugin"]

Fixtures
--------
``emulated_bench``
    A started :class:`~hil.emulate.bench.EmulatedBench` for the bench named by the test's
    ``@pytest.mark.hil_bench("path/or/name.yaml", time_mode="instant", seed=None)`` marker, else by
    the ``--hil-bench`` command-line option / ``hil_bench`` ini value (the marker's settings apply
    either way: ``@pytest.mark.hil_bench(time_mode="virtual")``); stopped after the test.
``emulated_bench_factory``
    ``factory(bench, **kwargs) -> EmulatedBench`` (started); every bench it made is stopped
    after the test. Use it for several benches or per-test settings.
``visa_resource_managers``
    A ``hil.drivers.transport.ResourceManagers`` closed after the test (pass it to
    ``hil.bench.instruments.make_driver``).

Example::

    @pytest.mark.hil_bench("scpi-xor")
    def test_daq_sees_the_input(emulated_bench, visa_resource_managers):
        bench = emulated_bench.loopback_bench
        with make_driver(bench.instruments["daq"], visa_resource_managers) as daq:
            ...
        assert emulated_bench.all_outputs_safe()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hil.emulate.bench import EmulatedBench

__all__ = ["emulated_bench", "emulated_bench_factory", "visa_resource_managers"]


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--hil-bench", default=None, help="bench file or shipped bench name for the emulated_bench fixture")
    parser.addini("hil_bench", "bench file or shipped bench name for the emulated_bench fixture", default="")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "hil_bench(bench=None, time_mode='instant', seed=None, ...): bench and "
                                       "EmulatedBench settings of the emulated_bench fixture (bench default: "
                                       "--hil-bench or the hil_bench ini value)")


@pytest.fixture
def emulated_bench_factory(request: Any) -> Iterator[Callable[..., EmulatedBench]]:
    """``factory(bench, *, time_mode="instant", time_scale=1.0, seed=None)`` → started bench (a
    relative bench path is found from the working directory or the project root)."""
    made: list[EmulatedBench] = []
    root = Path(request.config.rootpath)

    def factory(bench: Any, **kwargs: Any) -> EmulatedBench:
        emulated = EmulatedBench(_from_root(bench, root), **kwargs)
        made.append(emulated)
        return emulated.start()

    try:
        yield factory
    finally:
        for emulated in made:
            emulated.stop()


@pytest.fixture
def emulated_bench(request: Any, emulated_bench_factory: Callable[..., EmulatedBench]) -> EmulatedBench:
    """A started emulated bench (see the module docstring for how the bench is chosen).

    The marker's settings (``time_mode``, ``seed``, ...) apply whichever way the bench is named; a
    relative bench path that does not exist from the working directory is looked up from the
    project's root directory (where pytest.ini / pyproject.toml / conftest.py live)."""
    marker = request.node.get_closest_marker("hil_bench")
    settings = dict(marker.kwargs) if marker is not None else {}
    bench = marker.args[0] if marker is not None and marker.args else settings.pop("bench", None)
    settings.pop("bench", None)
    if bench is None:
        bench = request.config.getoption("--hil-bench", default=None) or request.config.getini("hil_bench")
    if not bench:
        pytest.fail("emulated_bench needs @pytest.mark.hil_bench(...), --hil-bench or the hil_bench ini value")
    return emulated_bench_factory(bench, **settings)


def _from_root(bench: Any, root: Path) -> Any:
    """A relative bench path that exists under the project root but not from here, as that path."""
    if isinstance(bench, (str, Path)) and not Path(bench).is_absolute() and not Path(bench).exists() \
            and (root / bench).is_file():
        return root / bench
    return bench


@pytest.fixture
def visa_resource_managers() -> Iterator[Any]:
    """``ResourceManagers`` for real pyvisa-py sessions, closed after the test."""
    from hil.drivers.transport import ResourceManagers

    managers = ResourceManagers()
    try:
        yield managers
    finally:
        managers.close_all()

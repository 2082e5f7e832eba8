"""``antiparallel_shockley`` has no series resistance: an explicit ``r_s`` > 0 is refused with its dotted
path instead of being dropped silently (before, ``r_s: 10`` built a pair with 0 Ω); a preset's r_s and
``r_s: 0`` stay accepted, as documented."""

import pytest

import hil.api as api
from hil.config import ConfigError


def circuit(element):
    return {"circuit": {"inputs": {"count": 2}, "hidden": {"count": 3, "element": element}, "outputs": {"count": 2},
                        "conductances": {"g_in": 1e-5, "g_out": 1e-5, "g_leak": 1e-7}}}


def test_an_explicit_series_resistance_is_refused():
    with pytest.raises(ConfigError, match=r"circuit\.hidden\.element\.r_s: antiparallel_shockley has no series "
                                          r"resistance"):
        api.build_circuit(circuit({"model": "antiparallel_shockley", "r_s": 10.0}))


@pytest.mark.parametrize("element", [{"model": "antiparallel_shockley", "preset": "BAT42"},
                                     {"model": "antiparallel_shockley", "r_s": 0.0},
                                     {"model": "shockley", "r_s": 10.0}])
def test_presets_and_zero_are_accepted(element):
    assert api.build_circuit(circuit(element)).n_hidden == 3

"""An element parameter outside its allowed range is a one-line configuration error naming the
dotted key, never a ValueError from inside the element (antiparallel v_b ≤ 0, per-node lists)."""

import pytest

from hil.circuit.laws import element_bank
from hil.config import ConfigError


@pytest.mark.parametrize("element, key", [
    ({"model": "antiparallel", "v_b": 0.0}, "v_b"),
    ({"model": "antiparallel", "v_b": -0.2}, "v_b"),
    ({"model": "antiparallel", "v_b": [0.1, 0.2, -0.1, 0.3]}, "v_b"),
])
def test_out_of_range_element_parameter_is_a_config_error(element, key):
    with pytest.raises(ConfigError) as exc:
        element_bank(element, 4, "board.circuit.hidden.element")
    assert f"board.circuit.hidden.element.{key}" in str(exc.value)

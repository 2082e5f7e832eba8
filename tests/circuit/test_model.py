"""Circuit descriptions: loading from YAML data and rejecting invalid ones with the field named."""

import numpy as np
import pytest

from hil.circuit.build import build_circuit
from hil.circuit.generate import random_circuit
from hil.config import ConfigError


def base(**over):
    d = {
        "name": "t",
        "inputs": {"count": 2, "inverted": True, "rails": {"vb": 1.0}},
        "hidden": {"count": 3, "element": {"model": "ideal"}},
        "outputs": {"count": 2, "differential": True},
        "conductances": {"g_in": 1e-5, "g_hh": None, "g_leak": 1e-7, "g_out": 2e-5},
    }
    d.update(over)
    return d


def test_builds_sources_inverted_copies_rails_and_pairs():
    c = build_circuit(base())
    assert c.source_names == ("x0", "x1", "x0_n", "x1_n", "vb")
    u = c.source_voltages(np.array([[0.3, -0.2]]))
    np.testing.assert_allclose(u, [[0.3, -0.2, -0.3, 0.2, 1.0]])
    assert c.differential_pairs == ((0, 1),)
    assert c.g_in.shape == (3, 5) and c.g_out.shape == (2, 3)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["conductances"].update(g_in=-1e-6), "circuit.conductances.g_in"),
        (lambda d: d["conductances"].update(g_out=[[1e-5, 1e-5]]), "circuit.conductances.g_out"),
        (lambda d: d["hidden"]["element"].update(i_s=-1.0, model="shockley"), "circuit.hidden.element.i_s"),
        (lambda d: d["hidden"]["element"].update(modle="ideal"), "circuit.hidden.element.modle"),
        (lambda d: d["outputs"].update(count=3), "circuit.outputs.differential"),
        (lambda d: d["hidden"]["element"].update(model="zener"), "circuit.hidden.element.model"),
    ],
)
def test_invalid_descriptions_name_the_field(mutate, field):
    d = base()
    mutate(d)
    with pytest.raises(ConfigError) as exc:
        build_circuit(d)
    assert field in str(exc.value)


def test_typo_gets_a_suggestion():
    d = base()
    d["hidden"]["element"]["temprature_c"] = 30
    with pytest.raises(ConfigError, match="did you mean 'temperature_c'"):
        build_circuit(d)


def test_floating_node_is_rejected():
    # hidden node 2 connects only to node 1 through g_hh... and node 1 only to node 2.
    d = base()
    g_in = np.full((3, 5), 1e-5)
    g_in[1:] = 0.0
    g_out = np.zeros((2, 3))
    g_hh = np.zeros((3, 3))
    g_hh[1, 2] = g_hh[2, 1] = 1e-5
    d["conductances"] = {"g_in": g_in.tolist(), "g_hh": g_hh.tolist(), "g_leak": 0.0, "g_out": g_out.tolist()}
    with pytest.raises(ConfigError, match="floating node"):
        build_circuit(d)


def test_asymmetric_coupling_is_rejected():
    d = base()
    g_hh = np.zeros((3, 3))
    g_hh[0, 1] = 1e-5
    d["conductances"]["g_hh"] = g_hh.tolist()
    with pytest.raises(ConfigError, match="g_hh: must be symmetric"):
        build_circuit(d)


def test_flat_conductance_round_trip_and_topology_edges():
    c = random_circuit(6, 3, 4, seed=2, coupling_degree=2)
    g = c.conductance_vector()
    topo = c.topology()
    assert g.shape == (topo.n_conductances,)
    c2 = c.with_conductances(g * 2)
    np.testing.assert_array_equal(c2.g_hh.pairs, c.g_hh.pairs)
    np.testing.assert_allclose(c2.g_hh.values, 2 * c.g_hh.values)
    np.testing.assert_allclose(c2.g_in, 2 * c.g_in)
    # every g_hh edge joins two hidden nodes, every g_out edge a hidden node and a port
    hh = topo.edges[topo.groups["g_hh"]]
    assert np.all((hh >= c.n_sources) & (hh < c.n_sources + c.n_hidden))
    assert len(hh) == int(np.count_nonzero(np.triu(c.g_hh.toarray(), 1))) == c.g_hh.m > 0

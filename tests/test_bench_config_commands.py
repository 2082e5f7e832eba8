"""The circuit commands on a bench config (board.backend: instruments): they use the circuit the bench
file names, or say in one line what to give instead."""

import json
from pathlib import Path

import yaml

from hil.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_solve_and_netlist_of_a_bench_config_use_the_bench_circuit(tmp_path, capsys):
    # configs/benches/xor-bench.yaml names sim-xor as its circuit: the answers must be sim-xor's
    args = ["--input", "0.7,-0.4", "--json"]
    assert main(["solve", "bench-xor", *args]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert main(["solve", "sim-xor", *args]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert bench.pop("report")["converged"] and sim.pop("report")["converged"]  # the report holds timings
    assert bench == sim
    decks = {}
    for name in ("bench-xor", "sim-xor"):
        assert main(["netlist", name, "-o", str(tmp_path / f"{name}.cir")]) == 0
        decks[name] = [line for line in (tmp_path / f"{name}.cir").read_text().splitlines()
                       if not line.startswith("*")]
    assert decks["bench-xor"] == decks["sim-xor"] and len(decks["sim-xor"]) > 20


def test_eval_of_a_config_says_to_train_it_first(capsys):
    assert main(["eval", "bench-xor"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory: train it first (hil train bench-xor on the bench" in err[0]


def test_activation_of_a_bench_config_uses_the_element_of_the_bench_circuit(tmp_path, capsys):
    circuit = tmp_path / "xor-shockley.yaml"
    circuit.write_text((ROOT / "configs/sim-xor.yaml").read_text().replace("element: {model: ideal}",
                                                                           "element: {model: shockley}"))
    bench = tmp_path / "bench.yaml"
    bench.write_text((ROOT / "configs/benches/xor-bench.yaml").read_text().replace("circuit: sim-xor",
                                                                                   f"circuit: {circuit}"))
    config = tmp_path / "bench-config.yaml"
    config.write_text((ROOT / "configs/bench-xor.yaml").read_text().replace("bench: xor-bench", f"bench: {bench}"))
    assert main(["activation", str(config), "--points", "21", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["element"]["model"] == "shockley"

    inline = tmp_path / "bench-inline.yaml"  # a circuit written into the bench file: no config to read it from
    data = yaml.safe_load(bench.read_text())
    data["circuit"] = yaml.safe_load(circuit.read_text())["board"]["circuit"]
    inline.write_text(yaml.safe_dump(data))
    config.write_text(config.read_text().replace(f"bench: {bench}", f"bench: {inline}"))
    assert main(["activation", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cannot be read as a config" in err and "Traceback" not in err

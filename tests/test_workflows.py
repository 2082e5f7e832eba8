"""What a user does after training: eval, export the trained network, the Python API, CLI basics."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

import hil
import hil.api as api
from hil.cli import main
from hil.config import embedded_config_names, load_yaml, parse_yaml


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "sim-xor", "--runs-dir", str(runs), "-q", "--set", "train.epochs=30",
                 "--set", "output.plots=false"]) == 0
    return next(runs.iterdir())


def test_eval_prints_accuracy_loss_and_writes_a_confusion_png(trained_run, capsys):
    assert main(["eval", str(trained_run), "--checkpoint", "last", "--data", "train"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"accuracy\s+\d+\.\d\d %", out) and "loss" in out and "checkpoint  last (epoch 30)" in out
    png = trained_run / "plots" / "confusion_train_last.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", str(trained_run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    conf = np.array(res["confusion"])
    assert conf.sum() == res["samples"] == 4 and res["checkpoint"] == "best"
    assert res["accuracy"] == pytest.approx(np.trace(conf) / conf.sum())


def test_eval_validation_split_without_one_is_a_config_error(trained_run, capsys):
    assert main(["eval", str(trained_run), "--data", "validation"]) == 2
    assert "--data validation: the run has no validation split" in capsys.readouterr().err
    with pytest.raises(api.ConfigError, match="^invalid configuration: split validation: the run has no validation"):
        api.evaluate_run(trained_run, split="validation")  # (the API's own argument, not the CLI flag)


def test_checkpoints_store_names_and_group_shapes(trained_run):
    with np.load(trained_run / "checkpoints" / "last.npz") as z:
        names = z["conductance_names"].tolist()
        shapes = json.loads(str(z["group_shapes"]))
        bounds = z["group_bounds"].tolist()
        groups = z["group_names"].tolist()
        g = z["conductances_s"]
    assert len(names) == g.size and names[0].startswith("R_")
    assert groups == ["g_in", "g_hh", "g_leak", "g_out"]
    for name, (a, b) in zip(groups, bounds):
        assert int(np.prod(shapes[name])) == b - a
    assert shapes["g_in"] == [8, 6] and shapes["g_out"] == [4, 8]


def test_solve_and_netlist_of_a_run_use_the_trained_conductances(trained_run, tmp_path, capsys):
    run = api.load_run(trained_run, "last")
    trained = run.board.read_conductances()
    untrained = api.build_board(load_yaml(str(trained_run / "config.resolved.yaml"))).read_conductances()
    assert not np.allclose(trained, untrained)
    out = tmp_path / "net.cir"
    assert main(["netlist", str(trained_run), "--checkpoint", "last", "-o", str(out)]) == 0
    assert "conductances of run" in capsys.readouterr().out
    deck = out.read_text()
    topo = run.board.topology
    k = int(np.argmax(np.abs(trained - untrained)))
    line = next(l for l in deck.splitlines() if l.startswith(topo.edge_names[k] + " "))
    assert float(line.split()[-1]) == pytest.approx(1.0 / trained[k], rel=1e-12)
    # solve of the run = the board's own measurement of the first test sample
    assert main(["solve", str(trained_run / "checkpoints" / "last.npz"), "--json", "--input", "1,0"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = run.board.measure(np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(list(res["samples"][0]["ports"].values()), m.y[0], rtol=1e-12, atol=1e-18)


def test_netlist_of_a_runs_resolved_config_exports_the_trained_network(trained_run, tmp_path, capsys):
    out = tmp_path / "net.cir"
    assert main(["netlist", str(trained_run / "config.resolved.yaml"), "-o", str(out)]) == 0
    assert "conductances of run" in capsys.readouterr().out
    trained = api.load_run(trained_run, "best").board.read_conductances()
    topo = api.load_run(trained_run, "best").board.topology
    deck = out.read_text()
    for k in (0, topo.n_conductances - 1):
        line = next(l for l in deck.splitlines() if l.startswith(topo.edge_names[k] + " "))
        assert float(line.split()[-1]) == pytest.approx(1.0 / trained[k], rel=1e-12)


def test_netlist_writes_every_input_vector(tmp_path, capsys):
    out = tmp_path / "deck.cir"
    assert main(["netlist", "spice-shockley", "-o", str(out), "--all-inputs"]) == 0
    decks = sorted(tmp_path.glob("deck_*.cir"))
    assert [d.name for d in decks] == ["deck_0.cir", "deck_1.cir"]
    assert "-3" in decks[1].read_text().split("Vx0 ")[1].splitlines()[0]
    assert not list(tmp_path.glob(".*tmp"))


def test_public_api_example(tmp_path):
    """The README's API example, step by step."""
    cfg = api.load_config("sim-xor", overrides=["train.epochs=5", "output.plots=false"])
    board = api.build_board(cfg)
    m = api.measure(board, [[0.0, 1.0]])
    assert m.y.shape == (1, 4)
    loss = api.make_loss(cfg, board)
    g = api.gradient(board, [[0.0, 1.0], [1.0, 1.0]], [1, 0], loss, estimator="hl")
    named = api.named_conductances(board, g.grad)
    assert named["g_in"].shape == (8, 6) and g.stats["may_be_biased"] is False
    by_element = api.named_conductances(board, g.grad, by="element")
    k = board.topology.groups["g_out"].start
    assert by_element[board.topology.edge_names[k]] == g.grad[k] == named["g_out"][0, 0]
    exact = api.gradient(board, [[0.0, 1.0], [1.0, 1.0]], [1, 0], loss, estimator="hl-exact")
    np.testing.assert_allclose(g.grad, exact.grad, rtol=1e-9, atol=1e-12 * np.abs(exact.grad).max())
    x4 = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    before = board.read_conductances()
    losses = api.train_steps(board, cfg, x4, [0, 1, 1, 0], steps=20)
    assert len(losses) == 20 and losses[-1] < losses[0]
    moved = board.read_conductances() != before
    assert moved[board.topology.groups["g_in"]].any() and not moved[board.topology.groups["g_leak"]].any()
    result = api.train(cfg, runs_dir=tmp_path)
    assert result.epochs_done == 5
    run = api.load_run(result.run_dir, "last")
    ev = api.evaluate_run(run, "test")
    assert 0.0 <= ev.accuracy <= 1.0 and ev.confusion.sum() == 4


def test_a_measurement_changed_in_place_does_not_change_the_next_one():
    """The board keeps its held operating point and hands it out again for the same inputs; a
    user who corrects the API's measurement in place (an offset subtracted from y, say) must not
    change what the board measures next."""
    board = api.build_board(api.load_config("sim-xor"))
    first = api.measure(board, [[0.0, 1.0], [1.0, 1.0]])
    y, e = first.y.copy(), first.e.copy()
    first.y -= 1.0
    first.e[:] = 0.0
    again = api.measure(board, [[0.0, 1.0], [1.0, 1.0]])
    assert np.array_equal(again.y, y) and np.array_equal(again.e, e)


def test_linear_loss_on_port_currents():
    cfg = load_yaml("sim-xor")
    board = api.build_board(cfg)
    loss = api.make_loss(None, board, name="linear", gain_per_a=1.0)
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    c = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 0.0, -1.0]])  # 1/A
    m = api.measure(board, x)
    val, dy = loss.value_and_grad(m.y, c)
    np.testing.assert_allclose(val, np.sum(c * m.y, axis=1))
    np.testing.assert_array_equal(dy, c)
    hl = api.gradient(board, x, c, loss, estimator="hl")
    fd = api.gradient(board, x, c, loss, estimator="fd")
    exact = api.gradient(board, x, c, loss, estimator="hl-exact")
    assert np.max(np.abs(hl.grad - exact.grad)) <= 1e-9 * np.abs(exact.grad).max()
    assert np.max(np.abs(fd.grad - exact.grad)) <= 1e-6 * np.abs(exact.grad).max()


def test_linear_loss_trains_from_a_config(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.loss=linear",
                 "--set", "train.epochs=3", "--set", "output.plots=false"]) == 0
    assert "summary" in capsys.readouterr().out


@pytest.mark.parametrize("name", [n for n in embedded_config_names() if "board" in load_yaml(n)
                                  and load_yaml(n)["board"].get("backend", "simulated") == "simulated"])
@pytest.mark.parametrize("estimator", ["hl", "hl-exact", "ep", "fd"])  # instrument benches: tests/boards
def test_every_estimator_on_every_shipped_training_config(name, estimator):
    cfg = api.load_config(name, [f"train.estimator={estimator}"])
    s = api.parse_config(cfg, name)
    assert s.estimator == estimator
    board = api.build_board(s)
    data = api.load_data(s)
    if estimator == "fd" and board.topology.n_conductances > 1000:
        # one FD gradient of a digits board takes 30-60 s (two solves per conductance): check that
        # the configured options bind to the estimator; the CLI test below runs fd end to end.
        import inspect

        from hil.train.estimators import fd_gradient

        inspect.signature(fd_gradient).bind(board, data.train.x[:1], data.train.y[:1], None, **s.estimator_options)
        return
    if getattr(board, "needs_backward_order", False) and estimator == "ep":
        # port-only perturbations cannot reach the earlier stages of a buffered cascade: refused
        with pytest.raises(ValueError, match="hl-exact"):
            api.gradient(board, data.train.x[:2], data.train.y[:2], api.make_loss(s, board), estimator,
                         **s.estimator_options)
        return
    r = api.gradient(board, data.train.x[:2], data.train.y[:2], api.make_loss(s, board), estimator,
                     **s.estimator_options)
    assert np.all(np.isfinite(r.grad)) and "may_be_biased" in r.stats


def test_fd_runs_from_the_cli_on_a_shipped_config(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.estimator=fd",
                 "--set", "train.epochs=1", "--set", "output.plots=false"]) == 0


def test_numbers_in_exponent_form_are_numbers():
    assert parse_yaml("a: 1e-8\nb: 5E3\nc: -2e+2\nd: .5e1\n") == {"a": 1e-8, "b": 5e3, "c": -200.0, "d": 5.0}
    cfg = api.load_config("sim-xor", ["board.g_min=1e-9", "train.optimizer.lr=5e-6"])
    s = api.parse_config(cfg)
    assert s.g_min == 1e-9 and s.lr == 5e-6


def test_yaml_file_with_exponent_numbers(tmp_path):
    raw = load_yaml("sim-xor")
    text = yaml.safe_dump(raw).replace("1.0e-08", "1e-8").replace("1.0e-05", "1e-5")
    assert "1e-8" in text
    p = tmp_path / "c.yaml"
    p.write_text(text)
    s = api.parse_config(load_yaml(p))
    assert s.g_min == 1e-8 and isinstance(s.circuit["conductances"]["g_leak"], float)


def test_hil_alone_prints_help_and_version(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: hil" in out and "train" in out and "eval" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hil {hil.__version__}"


def test_progress_is_one_plain_line_per_epoch_without_a_terminal(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hil", "train", "sim-xor", "--runs-dir", str(tmp_path),
                        "--set", "train.epochs=3", "--set", "output.plots=false"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    epoch_lines = [l for l in r.stdout.splitlines() if l.startswith("epoch")]
    assert len(epoch_lines) == 3 and "\r" not in r.stdout + r.stderr
    assert "it/s" not in r.stderr and "batch/s" not in r.stderr
    q = subprocess.run([sys.executable, "-m", "hil", "train", "sim-xor", "--runs-dir", str(tmp_path), "-q",
                        "--set", "train.epochs=3", "--set", "output.plots=false"],
                       capture_output=True, text=True, timeout=120)
    assert q.returncode == 0 and q.stderr == ""
    assert not [l for l in q.stdout.splitlines() if l.startswith("epoch ")]
    assert q.stdout.lstrip().startswith("summary")


def test_eval_plot_option_and_a_run_without_plots_folder(trained_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    shutil.rmtree(copy / "plots")
    assert main(["eval", str(copy), "-q"]) == 0
    assert (copy / "plots" / "confusion_test_best.png").is_file()
    assert main(["eval", str(copy), "--plot", str(tmp_path / "missing" / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "does not exist" in err
    assert main(["eval", str(copy), "--plot", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()


def test_eval_of_a_read_only_run_still_prints_the_evaluation(trained_run, capsys, monkeypatch):
    """A run directory the user may not write (an archive, another user's run): the numbers are what
    they asked for; the confusion PNG that cannot be written is a warning naming --plot."""
    import hil.train.plots as plots

    def read_only(confusion, path, title):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(plots, "plot_confusion", read_only)
    assert main(["eval", str(trained_run), "-q"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"accuracy\s+\d+\.\d\d %", captured.out) and "plot        not written" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and "--plot PNG" in err[0]
    assert main(["eval", str(trained_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["confusion_png"] is None


def test_api_gradient_names_a_misspelled_estimator_option():
    from hil.config import ConfigError

    cfg = api.load_config("sim-xor")
    board = api.build_board(cfg)
    loss = api.make_loss(cfg, board)
    with pytest.raises(ConfigError, match=r"hl\.delta_vv: unknown option \(did you mean 'delta_v'\?"):
        api.gradient(board, [[0.0, 1.0]], [1], loss, estimator="hl", delta_vv=0.1)
    with pytest.raises(ConfigError, match=r"fd\.delta_v: unknown option"):
        api.gradient(board, [[0.0, 1.0]], [1], loss, estimator="fd", delta_v=0.1)
    assert api.gradient(board, [[0.0, 1.0]], [1], loss, estimator="ep", delta_v=0.02).grad.shape == board.read_conductances().shape


def test_api_gradient_refuses_what_the_config_refuses_as_config_errors():
    """``beta`` ≤ 0 for ep, ep on a cascade and one_sweep on a cascade are ConfigErrors naming the
    option, as the config path's (they were ValueErrors from inside the estimators)."""
    from hil.config import ConfigError

    board = api.build_board("sim-xor")
    loss = api.make_loss("sim-xor", board)
    for beta in (-1.0, 0.0):
        with pytest.raises(ConfigError, match=r"ep\.beta: must be > 0"):
            api.gradient(board, [[0.0, 1.0]], [1], loss, estimator="ep", beta=beta)
    cascade = api.build_board("sim-xor-cascade")
    closs = api.make_loss("sim-xor-cascade", cascade)
    with pytest.raises(ConfigError, match="estimator: 'ep' perturbs output ports only"):
        api.gradient(cascade, [[0.0, 1.0]], [1], closs, estimator="ep")
    with pytest.raises(ConfigError, match="one_sweep: a cascade is measured stage by stage"):
        api.gradient(cascade, [[0.0, 1.0]], [1], closs, estimator="hl", one_sweep=True)


def test_api_make_loss_refuses_an_unknown_loss_or_gain_at_once():
    from hil.config import ConfigError

    cfg = api.load_config("sim-xor")
    board = api.build_board(cfg)
    with pytest.raises(ConfigError, match=r"loss: must be one of cross_entropy, mse, linear; got 'mse2'"):
        api.make_loss(cfg, board, name="mse2")
    with pytest.raises(ConfigError, match=r"gain_per_a: must be a finite number > 0 \(1/A\), got -1"):
        api.make_loss(cfg, board, gain_per_a=-1.0)

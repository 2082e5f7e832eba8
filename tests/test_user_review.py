"""A demanding user's review of the workflows beyond training: one-line messages, exit codes."""

import pytest

from hil.cli import main


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("text, says", [
    ("", "an empty file, not a run directory"),
    ("# nothing yet\n", "an empty file, not a run directory"),
    ("grid: {train.optimizer.lr: [1.0e-6]}\nconfig: sim-xor\n", "a sweep file (run it with hil sweep)"),
    ("foo: 1\n", "a YAML file that is not a training config"),
])
def test_eval_of_a_yaml_that_is_not_a_training_config_says_what_it_is(tmp_path, capsys, text, says):
    path = tmp_path / "given.yaml"
    path.write_text(text)
    assert main(["eval", str(path)]) == 2
    err = one_line(capsys.readouterr().err)
    assert says in err and "train it first" not in err


def test_eval_of_a_missing_yaml_is_not_called_a_training_config(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothere.yaml")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "no such file" in err and "training config" not in err


def test_instruments_probe_config_error_is_worded_like_every_other_command(capsys):
    assert main(["instruments", "probe", "FOO::BAR"]) == 2
    assert one_line(capsys.readouterr().err).startswith("hil: invalid configuration: ")
    assert main(["eval", "sim-xor"]) == 2  # the other commands' wording, for comparison
    assert one_line(capsys.readouterr().err).startswith("hil: invalid configuration: ")


@pytest.mark.parametrize("argv, fragment", [
    (["--time-scale", "0"], "--time-scale 0: must be a finite number of wall seconds per modelled second > 0"),
    (["--time", "realtime", "--time-scale", "0"], "--time-scale 0: must be a finite number"),
    (["--time", "virtual", "--time-scale", "2"], "--time-scale 2: only with --time realtime"),
])
def test_emulate_refuses_a_meaningless_time_scale(argv, fragment, capsys):
    assert main(["emulate", "scpi-xor", "--duration", "0", *argv]) == 2
    captured = capsys.readouterr()
    assert fragment in one_line(captured.err) and "TCPIP::" not in captured.out


def test_stage_progress_reports_a_running_stage_with_its_measured_points():
    import io
    import time

    from hil.progress import StageProgress

    out, points = io.StringIO(), {"n": 0}
    with StageProgress("hil calibrate", lambda: points["n"], bar=False, every_s=0.05, stream=out) as stages:
        stages.stage("1/2 zero readings")
        for _ in range(8):
            points["n"] += 100
            time.sleep(0.03)
        stages.stage("2/2 gains")
    lines = out.getvalue().splitlines()
    assert lines[0] == "hil calibrate: 1/2 zero readings"
    beats = [l for l in lines if l.startswith("hil calibrate:   … stage 1/2 running for")]
    assert beats and "points measured" in beats[-1] and "Traceback" not in out.getvalue()
    assert lines[-1] == "hil calibrate: 2/2 gains"  # nothing after close


def test_calibrate_shows_progress_during_a_long_stage(tmp_path, capsys, monkeypatch):
    import time

    import hil.calibrate.run as run
    import hil.progress as progress

    real = run.zero_readings

    def slow_zero_readings(board, *a, **k):
        time.sleep(0.5)  # a bench spends a minute here
        return real(board, *a, **k)

    monkeypatch.setattr(run, "zero_readings", slow_zero_readings)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.1)
    small = ["--set", "board.circuit.hidden.count=4", "--set", "board.calibration.gain_repeats=2",
             "--set", "board.calibration.repeats=1"]
    assert main(["calibrate", "sim-digits-mismatch", "--dir", str(tmp_path / "cal"), *small]) == 0
    out = capsys.readouterr().out
    assert "hil calibrate:   … stage 1/6 running for" in out and "wrote" in out


def test_calibrate_of_a_board_without_source_control_is_a_config_error(capsys):
    assert main(["calibrate", "sim-xor"]) == 2
    assert "board.devices" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("extra, metric, says", [
    ("train.evaluate_test: false", "test_acc", "metric: test_acc would stay empty in every run: its "
                                               "train.evaluate_test is false"),
    ("train.epochs: 1", "val_acc", "metric: val_acc would stay empty in every run: it has no validation split"),
])
def test_sweep_refuses_a_metric_its_runs_never_measure(tmp_path, capsys, extra, metric, says):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"config: sim-xor\nset: {{{extra}}}\ngrid: {{train.optimizer.lr: [1.0e-6, 2.0e-6]}}\n"
                     f"metric: {metric}\noutput: {tmp_path / 'out'}\n")
    assert main(["sweep", str(sweep), "--dry-run"]) == 2
    assert says in one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_sweep_lists_and_counts_a_failed_run_as_failed(tmp_path, capsys):
    import argparse

    from hil.sweep import load_sweep
    from hil.sweep_cli import _what_an_interrupt_kept

    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"config: sim-xor\nset: {{train.epochs: 2, output.plots: false, data.name: csv}}\n"
                     f"grid: {{data.path: [{tmp_path / 'missing.csv'}]}}\noutput: {tmp_path / 'out'}\n")
    assert main(["sweep", str(sweep), "--workers", "1"]) == 1
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--dry-run"]) == 0
    listing = capsys.readouterr().out.splitlines()[-1]
    assert "failed: ConfigError: data.path: file not found" in listing and listing.endswith("(runs again)")
    note = _what_an_interrupt_kept(load_sweep(str(sweep)), argparse.Namespace(output=None, sweep=str(sweep)))
    assert "of 1 run(s) 0 finished, 1 failed, 0 keep their last epoch, 0 not started" in note


def test_local_dask_cluster_workers_ignore_ctrl_c_and_log_errors_only(monkeypatch):
    """A terminal's Ctrl-C reaches every process of the group: the local cluster's worker
    processes must not each print a traceback (this process stops them)."""
    import logging
    import signal

    from dask import distributed

    from hil.sweep import runner

    seen = {}

    class Recorded(Exception):
        pass

    class FakeCluster:
        def __init__(self, **kwargs):
            seen["sigint"], seen["kwargs"] = signal.getsignal(signal.SIGINT), kwargs
            raise Recorded

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Recorded):
        runner._run_dask([], None, None, "local", 2, 1.0)
    assert seen["sigint"] == signal.SIG_IGN and seen["kwargs"]["silence_logs"] == logging.ERROR
    assert signal.getsignal(signal.SIGINT) == before


def test_sweep_directory_that_cannot_be_made_is_a_config_error_before_anything_runs(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"config: sim-xor\noutput: {tmp_path / 'afile' / 'sub'}\n")
    assert main(["sweep", str(sweep)]) == 2
    captured = capsys.readouterr()
    assert "output: sweep directory" in one_line(captured.err) and "cannot create it" in captured.err
    assert "to run on" not in captured.out


def test_sweep_summary_says_n_a_for_a_point_without_finished_runs(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"config: sim-xor\nset: {{train.epochs: 2, output.plots: false, data.name: csv}}\n"
                     f"grid: {{data.path: [{tmp_path / 'missing.csv'}]}}\noutput: {tmp_path / 'out'}\n")
    assert main(["sweep", str(sweep), "--workers", "1"]) == 1
    row = [l for l in capsys.readouterr().out.splitlines() if "missing.csv" in l and "0/1" in l][0]
    assert "nan" not in row and row.split().count("n/a") == 4


def test_type_mistakes_are_named_in_yaml_words(capsys):
    assert main(["train", "sim-xor", "--set", "train.batch_size=abc", "--set", "board.circuit=[1]"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size: expected an integer, got 'abc'" in err and "expected a mapping, got [1]" in err
    assert "expected int" not in err and "expected dict" not in err


def test_estimate_option_mistakes_are_worded_like_every_other_command(capsys):
    assert main(["estimate", "bench-xor", "--touched", "2"]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("hil: invalid configuration: --touched:") and "command line" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["scpi-xor", "--seed", "-1"], "--seed -1: must be an integer >= 0"),
    (["bench-xor"], "bench-xor: a training config, not a bench file; its bench is xor-bench: hil emulate xor-bench"),
    (["sim-xor"], "sim-xor: a training config of a simulated board, not a bench file"),
])
def test_emulate_mistakes_are_one_line_config_errors(argv, fragment, capsys):
    assert main(["emulate", *argv, "--duration", "0"]) == 2
    captured = capsys.readouterr()
    assert fragment in one_line(captured.err) and "TCPIP::" not in captured.out


def test_sweep_heartbeat_names_the_epoch_of_each_running_run(tmp_path):
    from hil.sweep import expand, parse_sweep
    from hil.sweep.progress import SweepHeartbeat

    spec = parse_sweep({"config": "sim-xor", "set": {"train.epochs": 20}, "seeds": [0, 1, 2]})
    points = expand(spec)
    runs = tmp_path / "runs"
    (runs / points[2].run_id).mkdir(parents=True)  # ended in an earlier start: not running
    (runs / points[2].run_id / "result.json").write_text("{}")
    lines = []
    beat = SweepHeartbeat(points, runs, lambda: 1, lines.append, every_s=0.05)
    (runs / points[0].run_id).mkdir()
    (runs / points[0].run_id / "metrics.csv").write_text("epoch,train_acc\n" + "".join(f"{e},0.5\n" for e in range(1, 8)))
    assert beat.line().endswith(f"1 of 3 runs done after 0.0 min; at epoch: {points[0].label} seed 0 7/20")
    with SweepHeartbeat(points, runs, lambda: 1, lines.append, every_s=0.05):
        import time

        time.sleep(0.3)
    assert lines and all(line.startswith("hil sweep: … 1 of 3 runs done") for line in lines)


def test_a_linear_network_is_not_said_to_have_zero_percent_of_its_diodes_conducting(tmp_path, capsys):
    import json

    linear = ["--set", "board.circuit.hidden.element.model=none", "--set", "output.plots=false"]
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=1", *linear]) == 0
    assert "diodes            none (a linear network" in capsys.readouterr().out
    run = str(next(tmp_path.iterdir()))
    assert main(["eval", run, "-q"]) == 0
    assert "diodes      none (a linear network)" in capsys.readouterr().out
    assert main(["eval", run, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["conduction_fraction"] is None


def test_a_second_sweep_never_wipes_a_run_another_process_is_writing(tmp_path, capsys):
    from hil.sweep import expand, load_sweep
    from hil.train.rundir import RunDir

    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"config: sim-xor\nset: {{train.epochs: 2, output.plots: false}}\noutput: {tmp_path / 'out'}\n")
    run_dir = tmp_path / "out" / "runs" / expand(load_sweep(str(sweep)))[0].run_id
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("epoch\n")  # the first sweep's run, before its first checkpoint
    holder = RunDir(run_dir)
    holder.lock()  # ... held by the process writing it
    try:
        assert main(["sweep", str(sweep), "--workers", "1"]) == 1
        assert "in use by another process" in capsys.readouterr().out
        assert (run_dir / "metrics.csv").read_text() == "epoch\n" and not (run_dir / "result.json").exists()
    finally:
        holder.close()
    assert main(["sweep", str(sweep), "--workers", "1"]) == 0  # once it is free, the run starts afresh
    assert "finished" in (run_dir / "result.json").read_text()


def test_a_sweep_on_an_instrument_bench_runs_one_run_at_a_time(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"config: bench-xor\nset: {{train.epochs: 1}}\nseeds: [0, 1]\noutput: {tmp_path / 'out'}\n")
    assert main(["sweep", str(sweep), "--dry-run"]) == 0  # the default seed keys fit a bench config
    assert "2 to run on this process" in capsys.readouterr().out
    assert main(["sweep", str(sweep), "--dry-run", "--workers", "2"]) == 2
    assert "--workers: runs on an instrument bench share its instruments" in one_line(capsys.readouterr().err)
    assert main(["sweep", str(sweep), "--dry-run", "--cluster", "local"]) == 2
    assert "cannot go to a cluster" in one_line(capsys.readouterr().err)


def test_a_refused_resume_does_not_announce_that_it_is_continuing(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=1",
                 "--set", "output.plots=false"]) == 0
    run = str(next(tmp_path.iterdir()))
    capsys.readouterr()
    assert main(["train", "--resume", run, "--set", "train.epochs=2", "--set", "board.circuit.hidden.count=3"]) == 2
    captured = capsys.readouterr()
    assert "continuing" not in captured.out and "cannot change the circuit's shape" in one_line(captured.err)
    assert main(["train", "--resume", run, "--set", "train.epochs=2", "--set", "output.plots=false"]) == 0
    assert f"hil train: continuing {run} from epoch 1 (of 2)" in capsys.readouterr().out


def test_stretching_a_cosine_schedule_that_changes_nothing_does_not_warn(capsys):
    """A run whose rate had reached 0 and stays 0 under the new length: nothing to warn about
    (the message read 'goes from 0 to 0')."""
    from types import SimpleNamespace

    from hil.api import _warn_cosine_extension

    events = []
    run = SimpleNamespace(event=lambda kind, **data: events.append(kind))
    settings = SimpleNamespace(schedule="cosine", epochs=4, lr=1e-6, lr_final_fraction=0.0)
    for new_lr, warns in ((0.0, False), (2.5e-7, True)):
        trainer = SimpleNamespace(steps_per_epoch=10, opt=SimpleNamespace(state={"step": 30}, current_lr=lambda: new_lr))
        _warn_cosine_extension(trainer, {"train": {"epochs": 3}}, settings, run)
        assert ("hil: warning: train.epochs changed from 3 to 4" in capsys.readouterr().err) is warns
    assert events == ["warning"]


@pytest.mark.parametrize("command, text, says", [
    ("train", "config: sim-xor\ngrid: {train.epochs: [1, 2]}\n", "a sweep file, not a training config: run it with hil sweep"),
    ("train", "instruments: {}\nwiring: {}\n", "a bench file, not a training config"),
    ("sweep", "board: {}\ndata: {name: xor}\ntrain: {}\n", "a training config, not a sweep file: train it with hil train"),
    ("train", "", "the file is empty"),
    ("sweep", "# nothing\n", "the file is empty"),
])
def test_a_file_given_to_the_wrong_command_is_named_in_one_line(tmp_path, capsys, command, text, says):
    path = tmp_path / "given.yaml"
    path.write_text(text)
    assert main([command, str(path)]) == 2
    assert says in one_line(capsys.readouterr().err)


def test_sweep_of_a_shipped_training_config_name_says_what_it_is(capsys):
    assert main(["sweep", "sim-xor"]) == 2
    assert "sim-xor: a shipped training config, not a sweep file" in one_line(capsys.readouterr().err)


def test_emulate_bench_that_cannot_be_emulated_is_worded_like_every_config_error(monkeypatch, capsys):
    import hil.emulate.bench as bench

    def no_personality(driver):
        raise KeyError(f"no emulator personality for driver {driver!r}")

    monkeypatch.setattr(bench, "personality_class", no_personality)
    assert main(["emulate", "scpi-xor", "--duration", "0"]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("hil: invalid configuration in ") and "no emulator personality" in err

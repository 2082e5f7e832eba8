"""Mistakes a new user makes get a one-line answer they can act on (exit 2, nothing started)."""

from __future__ import annotations

from hil.cli import main


def test_missing_run_directory_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "runs" / "typo"
    for argv in (["eval", str(missing)], ["train", "--resume", str(missing)], ["solve", str(missing / "checkpoints" /
                                                                                            "best.npz")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no such file or directory" in err and "Traceback" not in err, argv
    tmp_path.joinpath("empty").mkdir()
    assert main(["eval", str(tmp_path / "empty")]) == 2
    assert "not a run directory (no config.resolved.yaml)" in capsys.readouterr().err


def test_empty_trainable_list_is_refused(tmp_path, capsys):
    assert main(["train", "sim-xor", "--set", "train.trainable=[]", "--runs-dir", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "train.trainable: empty" in err
    assert not any(tmp_path.iterdir())  # no run directory was created


def test_circuit_override_on_a_training_config_points_at_board_circuit(capsys):
    assert main(["solve", "sim-xor", "--set", "circuit.hidden.count=4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "under 'board.circuit'" in err[0]
    assert main(["solve", "sim-xor", "--set", "board.circuit.hidden.count=4", "--set", "board.circuit.conductances.g_in=1e-5",
                 "--set", "board.circuit.conductances.g_out=1e-5"]) == 0


def test_configs_lists_configs_and_benches_in_aligned_columns(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "benches (hil emulate BENCH):" in lines
    rows = [l for l in lines if l.startswith("  ")]
    names = [l.split()[0] for l in rows]
    assert {"sim-digits-shockley-linear", "sim-xor", "scpi-xor", "demo-xor"} <= set(names)
    starts = {len(l) - len(l[2 + len(n):].lstrip()) for l, n in zip(rows, names)}
    assert len(starts) == 1  # every description starts in the same column
    assert all(l.split(None, 1)[1].strip() for l in rows)  # every entry is described


def test_run_directory_given_where_a_config_is_expected_names_its_config(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.resolved.yaml").write_text("name: x\n")
    for command in ("activation", "estimate", "calibrate"):  # solve and netlist take run directories
        assert main([command, str(run)]) == 2, command
        err = capsys.readouterr().err
        assert f"is a run directory, expected a YAML config (its config is {run / 'config.resolved.yaml'})" in err, command
        assert "Traceback" not in err


def test_misspelled_config_name_suggests_the_shipped_one(capsys):
    assert main(["train", "sim-digit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hil: invalid configuration: file not found: sim-digit" in err[0]
    assert "did you mean 'sim-digits'?" in err[0] and "hil configs" in err[0]
    assert main(["solve", "zzz-nothing-like-it.yaml"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and "hil configs" in err


def test_override_without_a_key_is_named_as_such(capsys):
    for bad in ("=3", " =3", "train.=3", ".epochs=3"):
        assert main(["train", "sim-xor", "--set", bad]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"hil: invalid configuration: override {bad!r}: empty key name (expected key.path=value)"], bad


def test_calibration_folder_that_cannot_be_made_is_refused_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["calibrate", "sim-digits-mismatch", "--dir", str(blocker / "cal")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no calibration stage ran
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and f"sim-digits-mismatch: --dir: calibration directory {blocker / 'cal'}: cannot create it" in err[0]


def test_configs_descriptions_are_never_cut_inside_parentheses(capsys):
    assert main(["configs"]) == 0
    rows = {l.split()[0]: l.split(None, 1)[1] for l in capsys.readouterr().out.splitlines() if l.startswith("  ")}
    assert all(d.count("(") == d.count(")") for d in rows.values()), rows
    assert rows["sim-digits-rram"] == "Digits on a filamentary-RRAM crossbar"


def test_misspelled_element_name_suggests_the_element(capsys):
    assert main(["activation", "shockly"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean the element 'shockley'?" in err[0] and "hil activation --list" in err[0]
    assert main(["activation", "sim-xr"]) == 2
    assert "did you mean the config 'sim-xor'?" in capsys.readouterr().err


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=3",
                 "--set", "train.optimizer.schedule=cosine", "--set", "output.plots=false"]) == 0
    run = next(tmp_path.iterdir())
    before = {name: (run / name).read_bytes() for name in ("config.resolved.yaml", "events.jsonl", "metrics.csv")}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cosine" not in err[0]
    assert err[0].endswith("config.resolved.yaml with --set train.epochs=2: train.epochs: 2 is fewer than the 3 "
                           "epochs the run has completed; give more than 3 to continue it")  # names the override
    assert {name: (run / name).read_bytes() for name in before} == before
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3"]) == 0  # the same: nothing to do
    assert "already finished its epochs" in capsys.readouterr().out


def test_circuit_errors_name_the_config_they_come_from(capsys):
    assert main(["train", "sim-xor", "--set", "board.circuit.hidden.count=-1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "hil: invalid configuration in sim-xor: board.circuit.hidden.count: must be > 0"]


def test_a_run_stopped_before_its_first_epoch_is_named_as_such_by_every_reader(tmp_path, capsys):
    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=1",
                 "--set", "output.plots=false"]) == 0
    run = next(tmp_path.iterdir())
    for ck in (run / "checkpoints").iterdir():
        ck.unlink()  # as after a Ctrl-C during epoch 1
    capsys.readouterr()
    for argv in (["eval", str(run)], ["solve", str(run)], ["netlist", str(run), "-o", str(tmp_path / "x.cir")],
                 ["train", "--resume", str(run)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the run has no completed epoch" in err[0], (argv, err)


def test_interrupted_calibration_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    import hil.calibrate.run as run

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "calibrate", ctrl_c)
    assert main(["calibrate", "sim-digits-mismatch", "--dir", str(tmp_path / "cal")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.endswith("hil: interrupted; the board is in its safe state, and no calibration was written "
                        "(hil train goes on applying the newest earlier one, if any)")
    assert not any((tmp_path / "cal").rglob("*.json"))


def test_calibration_interrupted_while_drawing_its_report_says_it_was_saved(tmp_path, capsys, monkeypatch):
    import hil.calibrate.run as run

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "write_report", ctrl_c)
    small = ["--set", "board.circuit.hidden.count=4", "--set", "board.calibration.gain_repeats=2",
             "--set", "board.calibration.repeats=1"]
    assert main(["calibrate", "sim-digits-mismatch", "--dir", str(tmp_path / "cal"), *small]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    (saved,) = (tmp_path / "cal").glob("*/*/calibration.json")
    assert err == (f"hil: interrupted; the board is in its safe state, and the calibration was saved to "
                   f"{saved.parent} (its report may be incomplete); hil train applies it")


def test_estimate_from_a_run_of_another_bench_is_refused(tmp_path, capsys):
    from hil.config import dump_yaml, load_yaml

    run = tmp_path / "xor-run"
    run.mkdir()
    (run / "config.resolved.yaml").write_text(dump_yaml(load_yaml("bench-xor")))
    (run / "metrics.csv").write_text("epoch,step,program_pulses,program_pulsed\n1,2,60,20\n")
    assert main(["estimate", "bench-iris", "--from-run", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hil: invalid configuration: --from-run {run}: a run on bench xor-bench; bench-iris uses "
                   "bench iris-bench, whose programming figures differ"]
    assert main(["estimate", "bench-xor", "--from-run", str(run)]) == 0
    assert f"measured in {run}" in capsys.readouterr().out


def test_activation_checks_its_plot_path_and_point_count_before_measuring(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "a.png"
    assert main(["activation", "clip", "--plot", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (f"hil: invalid configuration: --plot {missing}: "
                                               f"the folder {missing.parent} does not exist")
    assert not missing.parent.exists()  # no folder made from a typo
    assert main(["activation", "clip", "--points", "100000000"]) == 2  # would exhaust the memory
    assert "--points: at most 100000" in capsys.readouterr().err


def test_an_empty_input_option_is_refused_not_ignored(capsys):
    assert main(["solve", "sim-xor", "--input", ""]) == 2
    assert capsys.readouterr().err.strip() == "hil: invalid configuration: --input '': expected comma-separated voltages"


def test_a_key_written_twice_in_a_config_is_an_error_not_the_last_one_silently(tmp_path, capsys):
    from hil.config import dump_yaml, load_yaml

    text = dump_yaml(load_yaml("sim-xor"))
    assert text.count("  epochs: ") == 1
    cfg = tmp_path / "twice.yaml"
    cfg.write_text(text.replace("  epochs: ", "  epochs: 7\n  epochs: ", 1))
    line = cfg.read_text().splitlines().index("  epochs: 7") + 1
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == (f"hil: invalid configuration in {cfg}: line {line + 1}: "
                                               f"duplicate key 'epochs' (first on line {line})")
    assert not (tmp_path / "runs").exists()


def test_argument_mistakes_are_one_line_naming_the_help(capsys):
    for argv, fragment in ((["sweep", "x.yaml", "--workers", "0"], "hil sweep: argument --workers: must be >= 1"),
                           (["netlist", "sim-xor"], "hil netlist: the following arguments are required: -o/--output"),
                           (["eval", "runs/x", "--data", "tset"], "hil eval: argument --data: invalid choice: 'tset'"),
                           (["trian"], "hil: argument COMMAND: invalid choice: 'trian' (did you mean 'train'?")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(fragment) and "--help" in err[0], (argv, err)


def test_empty_output_folders_are_refused_not_replaced_by_a_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "sim-xor", "--runs-dir", "", "-q"]) == 2
    assert capsys.readouterr().err.strip() == "hil: invalid configuration in sim-xor: --runs-dir: runs directory '': empty path"
    assert main(["calibrate", "sim-digits-mismatch", "--dir", ""]) == 2
    assert "--dir: calibration directory '': empty path" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_resuming_a_finished_run_builds_no_board(tmp_path, capsys, monkeypatch):
    """A finished bench run resumed without --emulate spent about 20 s trying to reach the real bench
    before failing: a finished run (no --set) now says so without building its board."""
    import hil.api as api

    assert main(["train", "sim-xor", "--runs-dir", str(tmp_path), "-q", "--set", "train.epochs=2",
                 "--set", "output.plots=false"]) == 0
    run = next(tmp_path.iterdir())
    capsys.readouterr()

    def no_board(*args, **kwargs):
        raise AssertionError("a finished run built its board")

    monkeypatch.setattr(api, "_board_and_data", no_board)
    assert main(["train", "--resume", str(run)]) == 0
    assert "already finished its epochs" in capsys.readouterr().out


def test_cascade_configs_get_their_own_answers_from_activation_and_calibrate(capsys):
    """``hil activation`` of a cascade named stage 0's element only; ``hil calibrate`` of one advised
    adding board.devices, which cascades refuse.  Both now say what a cascade is, exit 2."""
    assert main(["activation", "sim-xor-cascade"]) == 2
    err = capsys.readouterr().err
    assert "stage 0: ideal, stage 1: clip" in err and "hil activation clip" in err
    assert main(["calibrate", "sim-xor-cascade"]) == 2
    err = capsys.readouterr().err
    assert "cascade" in err and "give it board.devices" not in err

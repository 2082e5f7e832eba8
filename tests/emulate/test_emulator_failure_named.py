"""A rehearsal whose emulator itself fails (an emulator limitation, e.g. a world it cannot solve)
names that failure in the command's one error line: the line gets no reply, so the drivers only see
a timeout, which used to be all the user was told."""

from hil.cli import main
from hil.config import dump_yaml, load_yaml
from hil.emulate.daq970 import Daq970Emulator


def test_train_emulate_names_the_emulators_own_failure(tmp_path, monkeypatch, capsys):
    bench = load_yaml("configs/benches/xor-bench.yaml")
    for inst in bench["instruments"].values():
        inst["timeout_s"] = 1.0  # the missing reply costs 1 s, not the bench's 10 s
    config = load_yaml("configs/bench-xor.yaml")
    config["board"]["bench"] = bench
    path = tmp_path / "bench-xor-fast.yaml"
    path.write_text(dump_yaml(config))
    real = Daq970Emulator.handle

    def failing(self, line):
        if "READ?" in line:
            raise ArithmeticError("world cannot be solved here")
        return real(self, line)

    monkeypatch.setattr(Daq970Emulator, "handle", failing)
    assert main(["train", str(path), "--emulate", "-q", "--runs-dir", str(tmp_path / "runs"),
                 "--set", "train.epochs=1", "--set", "output.plots=false"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "InstrumentTimeout" in err[0]
    assert "the emulated bench failed first: daq: ArithmeticError: world cannot be solved here" in err[0], err[0]
    assert "every output read back off" in err[0]
    monkeypatch.undo()  # the next command in this process is not blamed on it
    assert main(["estimate", "bench-xor", "--set", "data.input_scale_v=5"]) == 2
    assert "emulated bench failed" not in capsys.readouterr().err

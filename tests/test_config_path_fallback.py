"""A config argument falls back to the shipped config of that name only when it is a bare name
(or the checkout's `configs/NAME.yaml`): a mistyped path to a file of one's own is an error, not
a silent run of the shipped config that happens to share its file name."""

import pytest

from hil.cli import main
from hil.config import ConfigError, load_yaml


def test_a_bare_name_and_the_checkouts_configs_folder_still_find_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert load_yaml("sim-xor")["name"] == "sim-xor"
    assert load_yaml("configs/sim-xor.yaml")["name"] == "sim-xor"


def test_a_mistyped_path_to_ones_own_copy_is_not_replaced_by_the_shipped_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "sim-xor.yaml").write_text("name: mine\n")
    with pytest.raises(ConfigError, match=r"file not found: experiment/sim-xor\.yaml"):
        load_yaml("experiment/sim-xor.yaml")
    assert main(["train", "experiment/sim-xor.yaml", "--set", "train.epochs=1", "--runs-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "file not found: experiment/sim-xor.yaml" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()

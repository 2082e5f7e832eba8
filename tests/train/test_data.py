"""Data sets: built-in sets, the user's CSV/NPZ files, input scaling, and one-line errors."""

import random

import numpy as np
import pytest
import yaml

from hil.cli import main
from hil.config import ConfigError, Section, load_yaml
from hil.train.data import DataSpec, compatibility_problems, load_data, load_dataset, parse_data_section


def spec(**kw) -> DataSpec:
    return DataSpec(**kw)


@pytest.mark.parametrize("name, n_feat, n_classes, n_total", [
    ("iris", 4, 3, 150), ("wine", 13, 3, 178), ("breast_cancer", 30, 2, 569), ("digits", 64, 10, 1797)])
def test_sklearn_sets_split_stratified_without_download(name, n_feat, n_classes, n_total):
    d = load_data(spec(name=name))
    assert d.train.x.shape[1] == n_feat and d.n_classes == n_classes
    assert len(d.train.y) + len(d.test.y) == n_total
    assert len(d.test.y) == pytest.approx(0.25 * n_total, abs=1)
    assert set(np.unique(d.test.y)) == set(range(n_classes))


def test_digits_keeps_the_product_split_and_fixed_scale():
    d = load_dataset("digits", 1.0)
    assert (len(d.train.y), len(d.test.y)) == (1347, 450)
    assert d.train.x.max() == pytest.approx(1.0) and d.train.x.min() == 0.0


def test_mnist1d_standard_split_offline_and_global_rng_untouched():
    np.random.seed(123)
    random.seed(123)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    d = load_data(spec(name="mnist1d"))
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py
    assert d.train.x.shape == (4000, 40) and d.test.x.shape == (1000, 40) and d.n_classes == 10
    # fingerprint of the generator's default arguments (mnist1d 0.0.2.post1): class counts of the split
    assert np.bincount(d.train.y).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    again = load_data(spec(name="mnist1d"))
    assert np.array_equal(again.test.x, d.test.x)


def test_standardize_uses_the_fit_part_only_and_maps_to_volts():
    d = load_data(spec(name="wine", scaling="standardize", input_scale_v=0.5, validation_fraction=0.2))
    assert np.allclose(d.train.x.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(d.train.x.std(axis=0), 0.5)
    assert not np.allclose(d.val.x.mean(axis=0), 0, atol=1e-3)  # validation statistics were not used
    assert len(d.val.y) == pytest.approx(0.2 * 133, abs=1)


def test_minmax_maps_training_range_onto_the_volt_range():
    d = load_data(spec(name="iris", scaling="minmax", input_range_v=(-2.0, 3.0)))
    assert np.allclose(d.train.x.min(axis=0), -2.0) and np.allclose(d.train.x.max(axis=0), 3.0)
    d2 = load_data(spec(name="iris", scaling="minmax", input_scale_v=4.0))
    assert np.allclose(d2.train.x.min(axis=0), 0.0) and np.allclose(d2.train.x.max(axis=0), 4.0)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_csv_with_header_text_labels_and_given_test_split(tmp_path):
    train = write(tmp_path, "tr.csv", "a,b,kind\n0,1,cat\n1,0,dog\n2,2,cat\n0.5,1,dog\n")
    test = write(tmp_path, "te.csv", "a,b,kind\n1,1,dog\n3,0,cat\n")
    d = load_data(spec(name="csv", path=train, test_path=test, label_column="kind", scaling="fixed"))
    assert d.class_names == ("cat", "dog") and d.n_classes == 2
    assert d.train.y.tolist() == [0, 1, 0, 1] and d.test.y.tolist() == [1, 0]
    assert d.test.x.tolist() == [[1.0, 1.0], [3.0, 0.0]]


def test_csv_integer_labels_are_class_indices_and_split_is_stratified(tmp_path):
    rows = "\n".join(f"{i},{i % 3 * 2}" for i in range(30))  # label in the last column, no header
    d = load_data(spec(name="csv", path=write(tmp_path, "d.csv", rows + "\n"), test_fraction=0.2))
    assert sorted(set(d.train.y)) == [0, 2, 4] and d.n_classes == 5  # label k is output score k
    assert len(d.test.y) == 6 and sorted(np.bincount(d.test.y, minlength=5)[[0, 2, 4]]) == [2, 2, 2]


def test_npz_arrays_with_and_without_given_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    np.savez(tmp_path / "a.npz", x=x, y=y)
    d = load_data(spec(name="npz", path=str(tmp_path / "a.npz")))
    assert len(d.train.y) == 30 and len(d.test.y) == 10
    np.savez(tmp_path / "b.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    d = load_data(spec(name="npz", path=str(tmp_path / "b.npz"), scaling="fixed"))
    assert np.array_equal(d.test.x, x[30:]) and np.array_equal(d.test.y, y[30:])


@pytest.mark.parametrize("text, message", [
    ("1,2,0\n3,4,1\n5,1\n", "data.path: line 3 of .* has 2 fields, expected 3 \\(ragged file\\)"),
    ("1,2,0\nnan,4,1\n3,3,0\n", "NaN or infinite \\(first at sample 1, feature 0\\)"),
    ("1,2,0\n3,4,0\n5,6,0\n7,8,0\n", "single class"),
    ("1,2,0\n3,x,1\n", "line 2, column 2 .*'x' is not a number"),
    ("1,2,0.5\n3,4,1\n", "label 0.5 is not an integer class index"),
    ("1,2,-1\n3,4,1\n", "label -1 is negative"),
    ("\n\n", "no data rows"),
])
def test_csv_problems_are_one_line_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_data(spec(name="csv", path=write(tmp_path, "bad.csv", text), header=False))
    assert len(e.value.problems) == 1
    import re

    assert re.search(message, e.value.problems[0]), e.value.problems[0]


def test_unseen_test_label_and_missing_file(tmp_path):
    train = write(tmp_path, "tr.csv", "0,a\n1,b\n")
    test = write(tmp_path, "te.csv", "0,c\n")
    with pytest.raises(ConfigError, match="test label\\(s\\) \\['c'\\] never occur in the training data"):
        load_data(spec(name="csv", path=train, test_path=test))
    with pytest.raises(ConfigError, match="data.path: file not found: nope.csv"):
        load_data(spec(name="csv", path="nope.csv"))


def test_npz_problems(tmp_path):
    np.savez(tmp_path / "k.npz", features=np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="must hold arrays x and y .* it has features"):
        load_data(spec(name="npz", path=str(tmp_path / "k.npz")))
    np.savez(tmp_path / "s.npz", x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(ConfigError, match="3 feature rows but labels of shape \\(4,\\)"):
        load_data(spec(name="npz", path=str(tmp_path / "s.npz")))


@pytest.mark.parametrize("content", [b"x0,x1,label\n0.1,0.2,a\n", b"", "npy"])
def test_a_file_that_is_not_an_npz_says_so_without_numpys_pickle_advice(tmp_path, content):
    """A CSV, an empty file or a single .npy array given as NPZ data: one line saying it is not an
    NPZ (numpy's own message for the CSV suggests loading it with pickle; the .npy escaped as a
    TypeError)."""
    path = tmp_path / "d.npz"
    if content == "npy":
        np.save(tmp_path / "a.npy", np.zeros((3, 2)))
        (tmp_path / "a.npy").rename(path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="is not an NPZ file") as info:
        load_data(spec(name="npz", path=str(path)))
    assert "pickle" not in str(info.value)


@pytest.mark.parametrize("section, message", [
    ({"name": "csv"}, "data.path: required for data.name: csv"),
    ({"name": "iris", "path": "x.csv"}, "data.path: only for csv or npz data"),
    ({"name": "iris", "input_range_v": [0, 1]}, "data.input_range_v: only with scaling: minmax"),
    ({"name": "iris", "scaling": "minmax", "input_range_v": [1, 0]}, "data.input_range_v: expected \\[low, high\\]"),
    ({"name": "iris", "scaling": "zscore"}, "data.scaling: must be one of fixed, max, standardize, minmax"),
    ({"name": "iris", "label_column": 2}, "data.label_column: only for csv data"),
])
def test_data_section_problems_have_dotted_paths(section, message):
    problems = []
    parse_data_section(Section(section, "data", problems))
    import re

    assert any(re.search(message, p) for p in problems), problems


def test_outputs_that_cannot_represent_the_labels(tmp_path, capsys):
    class Topo:
        n_inputs, n_outputs, differential = 4, 4, np.zeros((2, 4))

    d = load_data(spec(name="iris"))
    problems = compatibility_problems(d, Topo())
    assert problems == ["board.circuit.outputs: the iris labels need 3 class scores (classes 0…2), "
                        "the circuit has 2 differential output pairs"]
    raw = load_yaml("sim-xor")
    raw["data"] = {"name": "iris", "scaling": "standardize"}
    raw["board"]["circuit"]["inputs"]["count"] = 4
    cfg = tmp_path / "iris.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "board.circuit.outputs: the iris labels need 3 class scores" in err and "Traceback" not in err


def test_cli_reports_a_ragged_csv_with_its_config_source(tmp_path, capsys):
    bad = write(tmp_path, "bad.csv", "1,2,0\n3,4,1\n5,1\n")
    raw = load_yaml("sim-xor")
    raw["data"] = {"name": "csv", "path": bad}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["train", str(cfg), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"invalid configuration in {cfg}" in err and "line 3 of" in err and "Traceback" not in err


def test_every_shipped_training_config_fits_its_data_set():
    from hil.boards.factory import make_board
    from hil.config import embedded_config_names
    from hil.train.settings import parse_settings

    for name in embedded_config_names():
        raw = load_yaml(name)
        if "board" not in raw:
            continue
        s = parse_settings(raw, name)
        if s.backend != "simulated":  # instrument benches: their circuit comes from a bench file
            continue
        board = make_board(s.backend, s.circuit, s.g_min, s.g_max)
        assert compatibility_problems(load_data(s.data_spec), board.topology) == [], name


def test_default_scaling_per_set():
    iris = load_data(spec(name="iris", input_scale_v=2.0))  # max: each feature over its training maximum
    assert np.allclose(iris.train.x.max(axis=0), 2.0) and iris.scaling["method"] == "max"
    assert load_data(spec(name="digits")).scaling["method"] == "fixed"
    assert load_data(spec(name="wine")).scaling["method"] == "standardize"

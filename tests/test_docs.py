"""The README and docs/ stand alone and say what the code does."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def test_every_link_resolves_inside_the_repository():
    for page in DOCS:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            assert not target.startswith(("http:", "https:", "/")), f"{page.name}: external link {target}"
            assert (page.parent / target).resolve().is_file(), f"{page.name}: broken link {target}"
        assert "/work/" not in text and "§" not in text, f"{page.name} refers outside the repository"


def test_docs_index_lists_every_page():
    index = (ROOT / "docs" / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"


def test_readme_stays_short():
    """A few minutes of reading: details belong in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 240


def test_every_command_has_a_section_in_commands_md():
    """docs/commands.md has a `## `hil COMMAND …`` section for every subcommand of the parser."""
    import argparse

    from hil.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    doc = (ROOT / "docs" / "commands.md").read_text()
    missing = [c for c in sub.choices if f"## `hil {c}" not in doc]
    assert not missing, f"docs/commands.md has no section for {missing}"


def _config_keys(path: Path) -> set[str]:
    text = path.read_text()
    return set(re.findall(r'\.get\("([a-z_]+)"', text)) | set(re.findall(r'\.section\("([a-z_]+)"', text))


def test_configuration_reference_names_every_key():
    """Every key the training and circuit readers accept is described in docs/ (the reference,
    or the page of the feature that adds it, e.g. docs/<topic>.md)."""
    ref = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    keys = _config_keys(ROOT / "hil" / "train" / "settings.py") | _config_keys(ROOT / "hil" / "circuit" / "build.py") \
        | _config_keys(ROOT / "boards" / "bench_config.py")
    missing = sorted(k for k in keys if not re.search(rf"`[\w.]*\b{k}\b", ref))
    assert not missing, f"no page in docs/ describes the config key(s) {missing}"


def test_solve_prints_what_the_docs_say(tmp_path):
    doc = (ROOT / "docs" / "commands.md").read_text()
    section = doc.split("## `hil solve")[1].split("\n## ")[0]
    out = subprocess.run([sys.executable, "-m", "hil", "solve", "spice-shockley"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120).stdout
    lines = out.splitlines()
    assert re.match(r"circuit \S+ from config spice-shockley: \d+ sources, \d+ hidden nodes \(shockley diodes\), "
                    r"\d+ output ports$", lines[0])
    for fragment in ("inputs [", "V(", "(delivered by the source)", "(into the output port)",
                     "diodes conducting:", "solve: converged via", "KCL"):
        assert fragment in out, fragment
        assert fragment in section, f"docs/commands.md does not describe {fragment!r}"
    assert re.search(r"^  diodes conducting: \d+ of 40$", out, re.M)
    assert re.search(r"^solve: converged via \S+ \(.*\), KCL residual \S+ A$", lines[-1])
    assert lines.index(next(l for l in lines if "(delivered by the source)" in l)) < \
        lines.index(next(l for l in lines if "(into the output port)" in l))


def test_readme_instrument_example_runs_after_the_install_command(tmp_path):
    """pyvisa-sim is a core dependency, and the README's two commands work from the repository root."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.lower().startswith("pyvisa-sim") for d in deps)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Instruments")[1].split("```bash")[1].split("```")[0]
    commands = [c for c in block.strip().splitlines() if c.strip()]
    assert any("instruments probe" in c for c in commands)
    script = "\n".join(commands).replace("/tmp/simdemo", str(tmp_path / "simdemo"))
    script = script.replace("hil instruments", f"{shlex.quote(sys.executable)} -m hil instruments")
    r = subprocess.run(["bash", "-euc", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "identity:  Keithley Instruments Inc. Model 707B" in r.stdout and "error queue: empty" in r.stdout


def _python_blocks():
    for page in DOCS:
        for i, block in enumerate(page.read_text().split("```python")[1:]):
            code = block.split("```")[0]
            # complete examples import the API; other blocks are fragments (drivers, tests)
            if "import hil.api" in code and "…" not in code:
                yield pytest.param(code, id=f"{page.name}-{i}")


@pytest.mark.parametrize("code", list(_python_blocks()))
def test_python_examples_in_the_docs_run(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs example>", "exec"), {})
    assert (tmp_path / "runs").is_dir() or "train(" not in code


def _tables(page: Path):
    """(line number, rows) of every Markdown table outside code blocks."""
    rows, start, fenced = [], 0, False
    for i, line in enumerate(page.read_text().splitlines() + [""], 1):
        fenced ^= line.startswith("```")
        if line.startswith("|") and not fenced:
            start = start or i
            rows.append(line)
        elif rows:
            yield start, rows
            rows, start = [], 0


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_table_renders(page):
    """A table starts with a header and a separator row and keeps its column count: a blank line
    inside a table turns the rows after it into plain text."""
    for start, rows in _tables(page):
        assert len(rows) >= 2 and re.fullmatch(r"\|[\s:|-]+\|\s*", rows[1]), \
            f"{page.name}:{start}: table without a header separator (a stray blank line above it?)"
        width = {len(re.split(r"(?<!\\)\|", r.strip())) for r in rows}
        assert len(width) == 1, f"{page.name}:{start}: rows with different numbers of cells"


def test_configuration_reference_lists_every_choice():
    """The reference's rows for the backend and the node element name every value the code accepts."""
    from hil.circuit.laws import ELEMENTS
    from hil.train.settings import BACKENDS

    ref = (ROOT / "docs" / "configuration.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w.]+)` \|.*$", ref, re.M)}
    for key, choices in (("backend", BACKENDS), ("hidden.element.model", ELEMENTS)):
        missing = [c for c in choices if f"`{c}`" not in rows[key].split("|")[2]]
        assert not missing, f"docs/configuration.md: {key} does not list {missing}"


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _matches(doc_line: str, lines: list[str], percent_tol: float = 1.0) -> bool:
    """Whether some printed line reads like ``doc_line``: the same words, percentages within
    ``percent_tol`` points, other numbers (epochs, counts) free.  Training runs through BLAS, whose
    last bits differ between CPUs, so a documented run is compared as a reader would, not digit
    by digit."""
    shape = _NUMBER.sub("#", doc_line)
    doc_pct = [float(v) for v in re.findall(r"(\d+(?:\.\d+)?) %", doc_line)]
    for line in lines:
        if _NUMBER.sub("#", line) == shape:
            got = [float(v) for v in re.findall(r"(\d+(?:\.\d+)?) %", line)]
            if all(abs(a - b) <= percent_tol for a, b in zip(doc_pct, got)):
                return True
    return False


def test_quickstart_and_eval_examples_are_what_the_shipped_run_prints(tmp_path, capsys):
    """The main job's summary in the quick start, the `hil eval` example of docs/commands.md, the
    README's main-job accuracy and the best-checkpoint sentence of docs/results.md read like what
    `hil train` and `hil eval` print (run directory, seconds and epochs aside; percentages within a
    point): a newcomer compares them line by line."""
    from hil.cli import main

    assert main(["train", "-q", "--runs-dir", str(tmp_path)]) == 0
    summary = capsys.readouterr().out.splitlines()
    block = (ROOT / "docs" / "quickstart.md").read_text().split("\nsummary\n")[1].split("```")[0]
    for line in block.splitlines():
        if line.strip() and not line.strip().startswith(("run directory", "epochs", "plots")):
            assert _matches(line, summary), f"docs/quickstart.md summary: {line.strip()!r} is not what hil train prints"
    test_acc = float(next(l for l in summary if "test accuracy" in l).split()[-2])
    readme = re.search(r"\| hil, ideal diodes \(`sim-digits`, the main job\) \| (\d+\.\d+) %",
                       (ROOT / "README.md").read_text())
    assert readme and abs(float(readme.group(1)) - test_acc) <= 1.0, "README: the main job's test accuracy"

    run = next(tmp_path.iterdir())
    assert main(["eval", str(run), "-q"]) == 0
    evaluation = capsys.readouterr().out.splitlines()
    example = (ROOT / "docs" / "commands.md").read_text().split("## `hil eval")[1].split("```")[1]
    for line in example.splitlines():
        if line.startswith(("checkpoint", "split", "accuracy", "loss", "diodes")):
            assert _matches(line, evaluation), f"docs/commands.md eval example: {line!r} is not what hil eval prints"
    accuracy = float(next(l for l in evaluation if l.startswith("accuracy")).split()[1])
    documented = re.search(r"for the shipped `sim-digits`: epoch \d+, (\d+\.\d+) % test",
                           (ROOT / "docs" / "results.md").read_text())
    assert documented and abs(float(documented.group(1)) - accuracy) <= 1.0, "docs/results.md: the best checkpoint"


def test_pages_install_the_checkout_and_link_each_other():
    """hil is installed from its checkout (`pip install .`, `".[extra]"`), never by a name a package
    index would resolve to someone else's project; pages refer to each other by links, not by paths."""
    for page in DOCS:
        text = page.read_text()
        for target in re.findall(r"pip install +(\S+)", text):
            assert target.strip("\"'`").startswith("."), f"{page.name}: 'pip install {target}' is not the checkout"
        if page.parent.name == "docs":
            assert not re.findall(r"`docs/[\w-]+\.md`", text), f"{page.name}: name another page with a link"


def test_bench_page_names_every_shipped_bench():
    from hil.bench.schema import shipped_bench_names

    page = (ROOT / "docs" / "bench.md").read_text().split("Shipped benches live in")[1]
    missing = [b for b in shipped_bench_names() if f"`{b}`" not in page]
    assert not missing, f"docs/bench.md does not describe the shipped bench(es) {missing}"


def test_commands_md_names_every_option():
    """Each option `hil CMD --help` lists (its long or its short spelling) appears in that command's
    section(s) of docs/commands.md."""
    import argparse

    from hil.cli import build_parser

    doc = (ROOT / "docs" / "commands.md").read_text()

    def subcommands(parser):
        return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})

    missing = []
    for name, parser in subcommands(build_parser()).items():
        section = "\n".join(s for s in doc.split("\n## ") if s.startswith(f"`hil {name}"))
        for sub in [parser, *subcommands(parser).values()]:
            for action in sub._actions:
                spellings = [o for o in action.option_strings if o not in ("-h", "--help")]
                if spellings and not any(re.search(rf"{re.escape(o)}\b", section) for o in spellings):
                    missing.append(f"hil {name} {spellings[0]}")
    assert not missing, f"docs/commands.md does not describe {missing}"

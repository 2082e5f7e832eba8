"""What a newcomer trips on first: messages that say one thing once, progress lines that mean it."""

import io
import threading
import time

from hil.cli import main


def test_configs_with_an_unknown_name_says_so_once(capsys):
    assert main(["configs", "nonexist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hil: invalid configuration: nonexist: no shipped config or bench of that name " \
                  "('hil configs' lists them)"
    assert main(["configs", "scpi-xo"]) == 2  # benches are suggested too
    assert "did you mean 'scpi-xor'?" in capsys.readouterr().err
    assert main(["configs"]) == 0 and "scpi-xor" in capsys.readouterr().out  # the listing still works


def test_stage_progress_lines_count_the_running_stage_not_the_command():
    """In a log, `hil calibrate` says 'stage N running for S s' every every_s seconds of that
    stage; a stage that started between two beats was reported after a fraction of it
    ('running for 2 s' when the docs promise a line every 10 s)."""
    from hil.progress import StageProgress

    out = io.StringIO()
    with StageProgress("hil calibrate", bar=False, every_s=1.0, stream=out) as stages:
        stages.stage("1/2 first")
        time.sleep(0.6)
        stages.stage("2/2 second")
        time.sleep(0.7)  # the command has run 1.3 s, the second stage 0.7 s: no line is due yet
    assert "running for" not in out.getvalue(), out.getvalue()
    assert not [t for t in threading.enumerate() if t.name == "stage-progress"]

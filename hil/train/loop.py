"""The training loop: talks only to a :class:`hil.board.Board`.

Each minibatch is measured as one batch call per phase; the gradient comes from the
configured estimator; the optimizer steps in conductance space and the board is
programmed with the projected result.  Every epoch appends a metrics row, writes the
``last`` checkpoint (conductances, optimizer state, RNG state) and logs events, so a
run stopped at any point resumes exactly from its last completed epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from hil.board import Board, ProgramResult, as_program_result, valid_mask
from hil.compile_signals import deferred_signals, signals_wait_for_compiles
from hil.train.data import Dataset, DataSplit
from hil.train.estimators import estimate
from hil.train.losses import Loss
from hil.train.optim import Optimizer, trainable_mask
from hil.train.rundir import RunDir, RunDirError, utc_now
from hil.train.settings import TrainSettings


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports, from its last completed epoch.

    ``train_acc`` is the running accuracy of that epoch (each batch measured before its update),
    ``val_acc``/``test_acc`` are measured after it, on the final conductances (None when the run
    has no such split or ``train.evaluate_test`` is off).  The best checkpoint is ``best_epoch``
    (by ``best_on``, score ``best_score``): :func:`hil.api.load_run` loads that one by default, so
    its accuracy can differ from these.  ``seconds_per_epoch`` is wall time, s.
    """

    run_dir: str
    epochs_done: int
    train_acc: float
    val_acc: float | None
    test_acc: float | None
    best_epoch: int
    seconds_per_epoch: float
    conduction_fraction: float
    outcome: str
    best_on: str = "validation accuracy"
    best_score: float | None = None


class ShapeMismatch(RunDirError):
    """A checkpoint that does not fit the board (a resume whose overrides change the circuit)."""


class TooManyInvalidSamples(RuntimeError):
    """Most samples of an epoch so far came back invalid (``train.max_invalid_fraction`` exceeded)."""


#: the invalid fraction is judged once an epoch has measured this many samples (or its whole split)
MIN_SAMPLES_FOR_INVALID_STOP = 16
#: seconds between two within-epoch progress lines (plain-line progress only: logs, pipes)
LINE_EVERY_S = 30.0


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT/SIGTERM until the block ends, so bookkeeping files stay consistent.

    The end-of-epoch writes (metrics row, checkpoints, event) are done as one unit: a
    Ctrl-C or SIGTERM arriving in the middle is re-delivered right after them
    (:func:`hil.compile_signals.deferred_signals`).
    """
    with deferred_signals():
        yield


def conductance_layout(topology) -> dict:
    """Names and group layout of the flat conductance vector, as stored in checkpoints."""
    return {
        "conductance_names": np.array(topology.edge_names, dtype=str),
        "group_names": np.array(list(topology.groups), dtype=str),
        "group_bounds": np.array([[sl.start, sl.stop] for sl in topology.groups.values()], dtype=np.int64),
        "group_shapes": np.array(json.dumps({k: list(topology.group_shapes.get(k, (sl.stop - sl.start,)))
                                             for k, sl in topology.groups.items()})),
    }


def check_checkpoint_fits(ck: dict, topology, where: str) -> None:
    """Raise :class:`ShapeMismatch` when a checkpoint's conductances do not fit ``topology``."""
    g = np.asarray(ck["conductances_s"])
    if g.shape != (topology.n_conductances,):
        raise ShapeMismatch(f"{where}: the checkpoint holds {g.size} conductances, the configured circuit has "
                            f"{topology.n_conductances}; a resume or evaluation cannot change the circuit's shape")
    if "conductance_names" in ck and tuple(ck["conductance_names"].tolist()) != tuple(topology.edge_names):
        raise ShapeMismatch(f"{where}: the checkpoint's conductance names differ from the configured circuit's "
                            "(a different topology); a resume or evaluation cannot change the circuit")


def restore_device_state(board: Board, checkpoint: dict) -> None:
    """Put the devices of a simulated non-ideal board back as ``checkpoint`` saved them (the ``board_*``
    entries: device conductances, programming times, drift clock, random stream; a calibrated board's
    compensation state), after the checkpoint's conductances were programmed.  Boards without such
    state (ideal simulations, instrument benches) are left as they are."""
    state = {key: v for key, v in checkpoint.items() if key.startswith("board_")}
    if state and hasattr(board, "load_state_dict"):
        board.load_state_dict(state)


def evaluate(board: Board, loss: Loss, split: DataSplit, chunk: int = 2048) -> tuple[float, float, float]:
    """(accuracy, mean loss, conducting fraction of hidden diodes) on a data split.

    A sample the board marked invalid (compliance, sentinel) counts as wrong; the mean loss is taken
    over the valid samples (NaN when there are none).
    """
    correct, total_loss, on_frac, n_valid = 0, 0.0, 0.0, 0
    n = len(split.y)
    for i in range(0, n, chunk):
        m = board.measure(split.x[i:i + chunk])
        t = split.y[i:i + chunk]
        ok = valid_mask(m)
        correct += int(np.sum((loss.predict(m.y) == t) & ok))
        total_loss += float(loss.value_and_grad(m.y, t)[0][ok].sum())
        n_valid += int(np.count_nonzero(ok))
        if m.on is not None:
            on_frac += float(m.on.mean()) * len(t)
    return correct / n, total_loss / n_valid if n_valid else float("nan"), on_frac / n


class Trainer:
    """Trains a board on a data set as configured by :class:`TrainSettings`."""

    def __init__(self, board: Board, settings: TrainSettings, data: Dataset, run: RunDir, progress: bool | str = True):
        """``progress``: ``True`` (a bar on a terminal, else one plain line per epoch),
        ``"lines"`` (one plain line per epoch), ``"bar"`` or ``False`` (silent)."""
        self.board, self.s, self.data, self.run = board, settings, data, run
        if progress is True:
            progress = "bar" if sys.stderr.isatty() else "lines"
        self.progress = progress or None
        topo = board.topology
        self.loss = Loss(settings.loss, settings.gain_per_a, topo.differential)
        mask = trainable_mask(topo, settings.trainable)
        g_min, g_max = board.conductance_bounds
        self.steps_per_epoch = math.ceil(len(data.train.y) / settings.batch_size)
        self.opt = Optimizer(settings.optimizer, settings.lr, g_min, g_max, mask, momentum=settings.momentum,
                             schedule=settings.schedule, total_steps=settings.epochs * self.steps_per_epoch,
                             lr_final_fraction=settings.lr_final_fraction)
        self.rng = np.random.default_rng(settings.seed)
        self.epoch = 0
        self.saved_epoch = 0  # the epoch that checkpoints/last.npz holds
        self.best = (-1.0, 0)
        self.best_on = "validation accuracy" if data.val is not None else "training accuracy"
        self._layout = conductance_layout(topo)  # the same in every checkpoint of the run
        self._g_cmd: np.ndarray | None = None  # commanded conductances (S), the optimiser's state

    # ---- checkpoints -------------------------------------------------------------
    def _checkpoint(self, tag: str) -> None:
        st = self.opt.state_dict()
        board_state = self.board.state_dict() if hasattr(self.board, "state_dict") else {}
        self.run.save_checkpoint(tag, {
            **board_state,
            "conductances_s": self._g_cmd if self._g_cmd is not None else self.board.read_conductances(),
            "epoch": np.array(self.epoch),
            "opt_step": st["step"], "opt_m": st["m"], "opt_v": st["v"],
            "rng_state": np.array(json.dumps(self.rng.bit_generator.state)),
            "best_acc": np.array(self.best[0]), "best_epoch": np.array(self.best[1]),
            "best_on": np.array(self.best_on),
            **self._layout,
        })

    def restore(self, tag: str = "last", overrides: list[str] | None = None) -> None:
        """Continue from a checkpoint: conductances, optimizer and RNG state, epoch count.

        A damaged ``last`` checkpoint falls back to ``best`` (with a warning).  ``overrides``
        (``key=value`` strings applied on resume) are recorded in the event log.  Raises
        :class:`ShapeMismatch` when the checkpoint does not fit the board.
        """
        used, ck = self.run.load_checkpoint_with_fallback(tag)
        check_checkpoint_fits(ck, self.board.topology, f"resume of {self.run.path}")
        try:
            opt_state = {"step": ck["opt_step"], "m": ck["opt_m"], "v": ck["opt_v"]}
            rng_state = json.loads(str(ck["rng_state"]))
            epoch, best = int(ck["epoch"]), (float(ck["best_acc"]), int(ck["best_epoch"]))
            if opt_state["m"].shape != ck["conductances_s"].shape or opt_state["v"].shape != opt_state["m"].shape:
                raise ValueError("optimizer state does not match the conductances")
        except (KeyError, ValueError, TypeError) as exc:
            raise RunDirError(f"checkpoint {used} of {self.run.path} is damaged ({type(exc).__name__}: {exc})") from None
        self._g_cmd = as_program_result(ck["conductances_s"], self.board.program(ck["conductances_s"], rel_tol=0.0),
                                        self.board.conductance_bounds).achieved
        restore_device_state(self.board, ck)
        self.opt.load_state_dict(opt_state)
        self.rng.bit_generator.state = rng_state
        self.epoch = self.saved_epoch = epoch
        self.best = best
        self.run.truncate_metrics(self.epoch)
        self.run.event("resume", step=self.epoch * self.steps_per_epoch, epoch=self.epoch,
                       overrides=list(overrides or []), checkpoint=used)

    # ---- loop ----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        s = self.s
        g_min, g_max = self.board.conductance_bounds
        if self.epoch == 0:
            g0 = np.clip(self.board.read_conductances(), g_min, g_max)
            self._g_cmd = as_program_result(g0, self.board.program(g0, rel_tol=0.0), (g_min, g_max)).achieved
            self.run.event("run_start", step=0, name=s.name, estimator=s.estimator, epochs=s.epochs)
        outcome = "finished"
        times: list[float] = []
        last = {}
        try:
            with signals_wait_for_compiles():  # a Ctrl-C never lands inside a numba compile
                while self.epoch < s.epochs:
                    last = self._epoch()
                    times.append(last["epoch_time_s"])
        except KeyboardInterrupt:
            outcome = "aborted"
            with deferred_interrupts():
                self.run.event("abort", step=self.saved_epoch * self.steps_per_epoch, reason="interrupted",
                               epochs_done=self.saved_epoch)
            raise
        except Exception as exc:
            outcome = "failed"
            with deferred_interrupts():
                self.run.event("error", step=self.saved_epoch * self.steps_per_epoch,
                               error=f"{type(exc).__name__}: {exc}", epochs_done=self.saved_epoch)
            raise
        finally:
            with deferred_interrupts():
                self.run.event("run_end", step=self.saved_epoch * self.steps_per_epoch, outcome=outcome,
                               epochs_done=self.saved_epoch)
                self.run.update_metadata(ended_utc=utc_now(), outcome=outcome, epochs_done=self.saved_epoch)
            if s.plots:
                try:  # an aborted run gets its curves (from metrics.csv) but no board read-out
                    self._plots(read_board=outcome != "aborted")
                except KeyboardInterrupt:  # a second Ctrl-C while plotting skips the plots
                    print("hil: warning: plots skipped (interrupted again)", file=sys.stderr)
                except Exception as exc:  # plots never hide the run's own outcome
                    print(f"hil: warning: plots not written ({type(exc).__name__}: {exc})", file=sys.stderr)
        if not last:
            metrics = self.run.read_metrics()
            last = metrics[-1] if metrics else {"train_acc": float("nan"), "val_acc": float("nan"),
                                                  "test_acc": float("nan"), "conduction_fraction": float("nan")}
        nan_none = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return TrainResult(str(self.run.path), self.epoch, float(last["train_acc"]), nan_none(last.get("val_acc")),
                           nan_none(last.get("test_acc")), self.best[1],
                           float(np.mean(times)) if times else float("nan"),
                           float(last.get("conduction_fraction", float("nan"))), outcome,
                           self.best_on, nan_none(self.best[0]) if self.best[1] else None)

    def _epoch(self) -> dict:
        s, data = self.s, self.data
        n = len(data.train.y)
        perm = self.rng.permutation(n)
        t0 = time.perf_counter()
        loss_sum, correct, on_sum, flips, unresolved, invalid = 0.0, 0, 0.0, 0, 0, 0
        seen_states = False  # a bench cannot see diode states: the conducting fraction is then unknown
        prog = {"unconverged": 0, "stuck": 0, "pulses": 0, "pulsed": 0, "max_rel_error": 0.0, "seconds": 0.0}
        bar = None
        if self.progress == "bar":
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{s.epochs}", leave=False,
                       unit="batch", dynamic_ncols=True)
        g = self._g_cmd if self._g_cmd is not None else self.board.read_conductances()
        last_line = t0
        bench_clock = getattr(self.board, "bench_time_s", None)
        bench_start = float(bench_clock()) if bench_clock is not None else 0.0
        for i in range(0, n, s.batch_size):
            idx = perm[i:i + s.batch_size]
            y_batch = data.train.y[idx]
            res = estimate(s.estimator, self.board, data.train.x[idx], y_batch, self.loss, s.estimator_options)
            target = self.opt.step(g, res.grad)
            returned = self.board.program(target, rel_tol=0.0)
            if bench_clock is None and not isinstance(returned, ProgramResult):
                # a board that reports only its read-back (simulations): no programming evidence to add up
                g = returned if returned is target else np.asarray(returned, dtype=float)
            else:
                pr = as_program_result(target, returned, self.board.conductance_bounds)
                g = pr.achieved
                for key, val in pr.summary().items():
                    if key in prog:
                        prog[key] = max(prog[key], val) if key == "max_rel_error" else prog[key] + val
            st = res.stats
            n_bad = st.get("invalid_samples", -1)
            if n_bad:  # some samples invalid (or not counted by the estimator): the mask says which
                ok = st["valid"] if "valid" in st else valid_mask(res.op)
                n_bad = ok.size - int(np.count_nonzero(ok))
            invalid += n_bad
            self._check_invalid(invalid, min(i + s.batch_size, n), n)
            hits = self.loss.predict(res.op.y) == y_batch
            loss_sum += float(res.loss[ok].sum() if n_bad else res.loss.sum())
            correct += int(np.count_nonzero(hits[ok] if n_bad else hits))
            if res.op.on is not None:
                on_sum += np.count_nonzero(res.op.on) / max(res.op.on.shape[1], 1)
                seen_states = True
            flips += st.get("flipped_samples", 0)
            unresolved += st.get("unresolved_flips", 0)
            if bar is not None:
                seen = min(i + s.batch_size, n)
                bar.set_postfix(loss=f"{loss_sum / max(seen - invalid, 1):.4f}", acc=f"{100 * correct / seen:.1f}%")
                bar.update(1)
            elif self.progress == "lines" and time.perf_counter() - last_line > LINE_EVERY_S:
                last_line = time.perf_counter()  # a slow epoch (a bench) in a log: a sign of life
                print(f"epoch {self.epoch + 1:3d}/{s.epochs}  batch {i // s.batch_size + 1}/{self.steps_per_epoch}  "
                      f"({last_line - t0:.0f} s)", flush=True)
        self._g_cmd = g
        if bar is not None:
            bar.close()
        train_time = time.perf_counter() - t0
        epoch = self.epoch + 1
        row = {"epoch": epoch, "step": epoch * self.steps_per_epoch, "lr": self.opt.current_lr(),
               "train_loss": loss_sum / (n - invalid) if n > invalid else float("nan"),  # over the valid samples
               "train_acc": correct / n,  # an invalid sample counts as wrong
               "conduction_fraction": on_sum / n if seen_states else float("nan"),
               "flipped_samples": flips, "unresolved_flips": unresolved, "epoch_time_s": train_time}
        if bench_clock is not None:  # a bench: masks, programming evidence and bench time per epoch
            row.update({"invalid_samples": invalid, "program_unconverged": prog["unconverged"],
                        "program_stuck": prog["stuck"], "program_pulses": prog["pulses"],
                        "program_pulsed": prog["pulsed"],
                        "program_max_rel_error": prog["max_rel_error"], "program_time_s": prog["seconds"],
                        "bench_time_s": 0.0})
        row["val_acc"] = evaluate(self.board, self.loss, data.val)[0] if data.val is not None else float("nan")
        row["test_acc"] = evaluate(self.board, self.loss, data.test)[0] if s.eval_test else float("nan")
        if bench_clock is not None:  # bench time of this epoch (training steps and evaluation), s
            row["bench_time_s"] = float(bench_clock()) - bench_start
        score = row["val_acc"] if data.val is not None else row["train_acc"]
        line = self._epoch_line(epoch, row, train_time, data.val is not None) if self.progress else None
        with deferred_interrupts():  # metrics row, checkpoints, event log and the epoch's line move together
            self.epoch = epoch
            self.run.append_metrics(row)
            if score > self.best[0]:
                self.best = (score, self.epoch)
                self._checkpoint("best")
            self._checkpoint("last")
            self.saved_epoch = self.epoch
            self.run.event("epoch_end", step=row["step"], **{k: v for k, v in row.items() if k not in ("step",)})
            if line is not None:  # (a Ctrl-C during the saves is taken after this line: the saved epoch is shown)
                if self.progress == "bar":
                    from tqdm import tqdm

                    tqdm.write(line)
                else:
                    print(line, flush=True)
        return row

    def _epoch_line(self, epoch: int, row: dict, train_time: float, has_val: bool) -> str:
        """The progress line of a finished epoch: loss, accuracies, seconds (and bench seconds), and
        the programming failures when the devices did not follow their targets."""
        s = self.s
        extra = f"  val {100 * row['val_acc']:.1f}%" if has_val else ""
        test = f"  test {100 * row['test_acc']:.1f}%" if s.eval_test else ""
        bench = f", bench {row['bench_time_s']:.4g} s" if "bench_time_s" in row else ""
        line = (f"epoch {epoch:3d}/{s.epochs}  loss {row['train_loss']:.4f}  train {100 * row['train_acc']:.1f}%"
                f"{extra}{test}  ({train_time:.3g} s{bench})")
        if row.get("program_unconverged") or row.get("program_stuck"):  # the devices did not follow the targets
            line += (f"  programming: {row['program_unconverged']} unconverged, {row['program_stuck']} stuck "
                     "(metrics.csv, events.jsonl)")
        return line

    def _check_invalid(self, invalid: int, seen: int, n: int) -> None:
        """Stop the run (:class:`TooManyInvalidSamples`) when more than ``train.max_invalid_fraction``
        of the samples measured so far in this epoch were invalid: their measurements add nothing to
        the gradient, so going on would spend bench time on a board that is not answering."""
        limit = self.s.max_invalid_fraction
        if limit >= 1 or invalid <= limit * seen or seen < min(n, MIN_SAMPLES_FOR_INVALID_STOP):
            return
        raise TooManyInvalidSamples(
            f"stopped in epoch {self.epoch + 1}: {invalid} of the {seen} training samples measured so far were "
            f"invalid (compliance or implausible readings), more than train.max_invalid_fraction = {limit:g}; "
            "check the drive voltages and limits, or raise the threshold with "
            "--set train.max_invalid_fraction=F (1: never stop)")

    def _plots(self, read_board: bool = True) -> None:
        """Write plots/curves.png from metrics.csv and, if ``read_board``, plots/conductances.png."""
        from hil.train.plots import plot_conductances, plot_curves

        metrics = self.run.read_metrics()
        if metrics:
            plot_curves(metrics, self.run.path / "plots" / "curves.png", f"{self.s.name}: training curves", self.s.loss,
                        self.best[1] or None)
        if not read_board:
            return
        topo = self.board.topology
        g = self.board.read_conductances()
        groups = {k: g[sl].reshape(topo.group_shapes.get(k, (-1,))) for k, sl in topo.groups.items()}
        plot_conductances(groups, self.run.path / "plots" / "conductances.png", f"{self.s.name}: final conductances",
                          (self.s.g_min, self.s.g_max))

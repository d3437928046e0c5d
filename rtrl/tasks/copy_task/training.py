"""Training a copy-task model: the updates, the loop with validation and stopping, the run files.

BPTT models (and RTRL ones with ``full_sequence``) take one optimizer step per batch of whole
sequences (``batched_updates``); RTRL models otherwise learn fully online, a step after every
token (``online.online_updates``). Either way ``train`` validates every ``eval_every`` training
sequences, keeps the best checkpoint by validation sequence accuracy, and tests it at the end.

Run files in ``config.out``: metrics.csv (one row of ``METRIC_FIELDS`` per validation),
checkpoint.pt (the best model, its config and validation row), learning_curve.png, results.json.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from rtrl.records.files import write_atomically, write_text_atomically
from rtrl.records.metrics import MetricsLog
from rtrl.records.run_guard import RunGuard
from rtrl.runtime.devices import cpu_count
from rtrl.runtime.sizes import check_fits, copy_task_parts
from rtrl.records.plots import Panel, Series, plot_panels
from rtrl.tasks.copy_task.config import CopyTaskConfig, check_config, default_lr
from rtrl.tasks.copy_task.data import NUM_INPUT_TOKENS, CopyData, make_splits, paper_code_view, save_splits, sequence_ends, sequence_order
from rtrl.tasks.copy_task.model import CopyModel, evaluate, make_optimizer, optimizer_step
from rtrl.tasks.copy_task.online import online_updates
from rtrl.tasks.copy_task.scoring import loss_mask

log = logging.getLogger(__name__)
METRIC_FIELDS = ("step", "sequences", "epoch", "wall_time", "train_loss", "valid_loss",
                 "valid_seq_acc", "valid_bit_acc")


def batched_updates(model: CopyModel, data: CopyData, config: CopyTaskConfig,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Iterator[tuple[float, int]]:
    """One optimizer step per batch of whole sequences; yields (loss, sequences in the batch).

    BPTT models: one forward over the batch (cut at its longest sequence) and one backward.
    learning rtrl with ``full_sequence``: T=1 calls on every token carrying state and sensitivities,
    the per-token RTRL gradients summed, one step at the end (BPTT's update, computed forward).
    """
    device = model.readout.weight.device
    order = sequence_order(len(data), generator)
    while True:
        batch = data.subset(torch.tensor([next(order) for _ in range(config.batch_size)]))
        T = int(sequence_ends(batch).max())
        tokens = batch.inputs[:, :T].t().to(device)                       # (T,B)
        targets = batch.targets[:, :T].t().to(device)
        mask = loss_mask(batch.targets, batch.lengths, config.loss_on, config.scoring)[:, :T].t().to(device)
        count = int(mask.sum())
        if count == 0:      # possible with loss_on="output", scoring="paper-code": nothing to learn from
            yield float("nan"), config.batch_size
            continue
        state = model.initial_state(config.batch_size)
        if config.learning == "rtrl":
            total = 0.0
            for t in range(T):
                logits, state = model(tokens[t:t + 1], state)
                if mask[t].any():
                    loss = F.cross_entropy(logits[0][mask[t]], targets[t][mask[t]], reduction="sum") / count
                    loss.backward()
                    total += loss.item()
        else:
            logits, _ = model(tokens, state)
            loss = F.cross_entropy(logits[mask], targets[mask])
            loss.backward()
            total = loss.item()
        optimizer_step(model, optimizer, config.grad_clip)
        yield total, config.batch_size


def plot_learning_curve(rows: list[dict], path: Path, title: str) -> None:
    """Validation sequence/bit accuracy and train/valid loss against training sequences, as a PNG."""
    seen = [r["sequences"] for r in rows]

    def series(label: str, column: str, scale: float = 1.0) -> Series:
        return Series(label, seen, [scale * r[column] for r in rows], marker=".")

    accuracy = Panel([series("valid sequence acc.", "valid_seq_acc", 100),
                      series("valid bit acc.", "valid_bit_acc", 100)],
                     xlabel="training sequences", ylabel="accuracy (%)", ylim=(0, 101), legend_loc="lower right")
    loss = Panel([series("train", "train_loss"), series("valid", "valid_loss")],
                 xlabel="training sequences", ylabel="cross-entropy", log_y=True)
    plot_panels([accuracy, loss], path, title=title, panel_size=(5.0, 3.8))


def _stop_reason(config: CopyTaskConfig, row: dict, out_of_time: bool, out_of_steps: bool) -> str | None:
    """Why training stops after this validation, or None to go on (the first reason that holds)."""
    if row["valid_seq_acc"] >= 1.0:
        return "100% validation sequence accuracy"
    if out_of_time:
        return f"time budget {config.time_budget:g} s"
    if out_of_steps:
        return f"max_steps {config.max_steps}"
    return None


def _setup(config: CopyTaskConfig):
    """The checked config with its lr resolved, the splits (laid out for its scoring), the model on its
    device, and the stream of its training updates."""
    check_config(config)
    if config.threads:
        threads = min(config.threads, cpu_count())
        if threads < config.threads:
            log.warning("threads=%d is more than the %d CPUs of this machine; using %d", config.threads, threads,
                        threads)
        torch.set_num_threads(threads)
    splits = make_splits(config.length, config.seed, (config.train_size, config.valid_size, config.test_size),
                         config.disjoint_min_length)
    if config.save_data:
        save_splits(splits, config.save_data)
    if config.scoring == "paper-code":
        splits = {name: paper_code_view(data, config.length) for name, data in splits.items()}
    torch.manual_seed(config.seed)
    model = CopyModel(config.model_config()).to(torch.device(config.device))
    if config.lr is None:
        config = dataclasses.replace(config, lr=default_lr(config.cell))
    optimizer = make_optimizer(model, config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    online = config.learning == "rtrl" and not config.full_sequence
    updates = (online_updates if online else batched_updates)(model, splits["train"], config, optimizer, generator)
    return config, splits, model, updates


def train(config: CopyTaskConfig, progress: bool = True, force: bool = False) -> dict:
    """Train, validate, keep the best checkpoint, test it; write the run files; return the results.

    A ``config.out`` that holds a finished run of other settings (its results.json) is refused, naming the
    differences, unless ``force``: the new run would replace its files.

    Stops at the first of: ``epochs`` passes, ``max_steps`` optimizer steps, ``time_budget``
    seconds, or 100% validation sequence accuracy. ``progress``: show a tqdm progress bar.
    Raises ``SettingError`` for a bad setting (``check_config``).
    """
    check_config(config)
    check_copy_task_memory(config)   # before anything is allocated or created
    guard = RunGuard(config.out, "copy-task").acquire() if config.out else None   # locked, not another kind of run
    try:
        return _train(config, progress, guard, force)
    finally:
        if guard is not None:
            guard.release()


def check_copy_task_memory(config: CopyTaskConfig) -> None:
    """Refuse, before allocating, a run whose data set, model and sensitivities would not fit here."""
    N, L = config.hidden_size, config.num_layers
    per_layer = N * (N + NUM_INPUT_TOKENS)
    params = per_layer * L * (4 if config.cell == "lstm" else 1) * 4
    sensitivity = 0
    if config.label == "elstm-rtrl":
        sensitivity = 8 * N * L * 4 + (16 * N * N * (L - 1) * 4 if config.multilayer == "exact" else 0)
    check_fits(copy_task_parts(config, sensitivity, params), None,
               "with {hidden_size}, {num_layers}, {batch_size}, {train_size}, {valid_size}, {test_size}: use "
               "fewer units, layers or sequences", hidden_size=N, num_layers=L, batch_size=config.batch_size,
               train_size=config.train_size, valid_size=config.valid_size, test_size=config.test_size)


# settings that do not change what a run computes: a finished run of others may be run again over itself
RUNTIME_SETTINGS = ("out", "threads", "device", "save_data")


def refuse_replacing_another_run(config: CopyTaskConfig, guard: RunGuard) -> None:
    """A finished run in ``config.out`` (its results.json) of other settings than ``config`` (set up: its defaults
    filled in) is refused, naming the differences. The same settings run again over it: the same run."""
    try:
        old = json.loads((Path(config.out) / "results.json").read_text())["config"]
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise guard.error(f"{config.out}/results.json cannot be read ({error}); it was left as it is",
                          "--force to replace it") from None
    new = dataclasses.asdict(config)
    differing = sorted(k for k in set(old) | set(new) if k not in RUNTIME_SETTINGS and old.get(k) != new.get(k))
    if differing:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing)
        raise guard.error(f"{config.out} holds a finished copy-task run with other settings ({details}); this run "
                          "would replace its results", "--force to replace it")


def _train(config: CopyTaskConfig, progress: bool, guard: RunGuard | None, force: bool = False) -> dict:
    from tqdm import tqdm

    config, splits, model, updates = _setup(config)
    out = Path(config.out) if config.out else None
    if guard is not None:
        if not force:
            refuse_replacing_another_run(config, guard)
        guard.record()

    eval_every = config.eval_every or config.train_size
    total_sequences = config.epochs * config.train_size
    rows: list[dict] = []
    best, best_state = {"valid_seq_acc": -1.0}, None
    step = sequences = 0
    next_eval = eval_every
    loss_sum, loss_count = 0.0, 0
    stop_reason = f"{config.epochs} epochs"
    metrics = MetricsLog(out / "metrics.csv", METRIC_FIELDS, fresh=True) if out else None
    start = time.perf_counter()
    bar = tqdm(total=total_sequences, unit="seq", disable=not progress, dynamic_ncols=True,
               desc=f"{config.label} L={config.length}")
    try:
        for loss_value, finished in updates:
            step += 1
            sequences += finished
            bar.update(finished)
            if not math.isnan(loss_value):
                loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
            out_of_time = config.time_budget is not None and time.perf_counter() - start >= config.time_budget
            out_of_steps = config.max_steps is not None and step >= config.max_steps
            done = sequences >= total_sequences
            if not (sequences >= next_eval or out_of_time or out_of_steps or done):
                continue
            next_eval = (sequences // eval_every + 1) * eval_every
            model.eval()
            valid = evaluate(model, splits["valid"], config.eval_batch_size, config.loss_on, config.scoring)
            model.train()
            row = {"step": step, "sequences": sequences, "epoch": sequences / config.train_size,
                   "wall_time": time.perf_counter() - start,
                   "train_loss": loss_sum / loss_count if loss_count else float("nan"),
                   "valid_loss": valid["loss"], "valid_seq_acc": valid["seq_acc"], "valid_bit_acc": valid["bit_acc"]}
            rows.append(row)
            if metrics:
                metrics.write(row)
            loss_sum, loss_count = 0.0, 0
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", valid_seq=f"{100 * row['valid_seq_acc']:.1f}%")
            if row["valid_seq_acc"] > best["valid_seq_acc"]:
                best = dict(row)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if out:
                    payload = {"model": best_state, "config": dataclasses.asdict(config), "valid": best}
                    write_atomically(out / "checkpoint.pt", lambda tmp: torch.save(payload, tmp))
            reason = _stop_reason(config, row, out_of_time, out_of_steps)
            if reason or done:
                stop_reason = reason or stop_reason
                break
    finally:
        bar.close()
        if metrics:
            metrics.close()
    train_time = time.perf_counter() - start

    model.load_state_dict(best_state)
    model.eval()
    test = evaluate(model, splits["test"], config.eval_batch_size, config.loss_on, config.scoring)
    reached = next((r for r in rows if r["valid_seq_acc"] >= 1.0), None)
    results = {
        "config": dataclasses.asdict(config),
        "test": test,
        "best_valid": best,
        "stop_reason": stop_reason,
        "steps": step,
        "sequences": sequences,
        "train_time_s": train_time,
        "time_to_100pct_valid_s": reached["wall_time"] if reached else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if out:
        write_text_atomically(out / "results.json", json.dumps(results, indent=2))
        plot_learning_curve(rows, out / "learning_curve.png",
                            f"copy task, {config.label}, L={config.length}, N={config.hidden_size}")
    return results

"""Resume soak: a search SIGKILLed at many moments finishes bit-identical to an uninterrupted one.

For the default strategy and for PBT, on a tiny search (synthetic data, a 16-16-4 MLP,
population 8, 20 generations of 20 steps, a checkpoint every generation):

1. the search runs uninterrupted in a child process, without ``checkpoint_dir``: the
   reference;
2. the same search runs in a child process with a ``checkpoint_dir`` and is SIGKILLed, then
   started again with the same arguments, ``--kills`` times in all, then left to finish.
   Each kill is one of three kinds, drawn at random (seeded):

   * ``save``: when a new ``*.orbax-checkpoint-tmp*`` directory appears (a save has begun),
     after a random delay within the observed length of a save;
   * ``random``: once the child has committed a new generation, after a random delay of up
     to two generations with their saves (lands in training, the strategy, the save, or
     between);
   * ``startup``: a random delay after launch, within the observed start-up time (import,
     compile, checkpoint restore, a step being moved aside), or at the launch's first save
     if that comes sooner (the start-up time varies with the load on the machine);

   ``random`` kills are drawn only while three or more generations are left, ``save`` ones
   while two are, so the run cannot finish before its last kill;

   whether a kill *landed* during a save is judged afterwards from the directory: a
   temporary directory of that launch was still there when the child was dead;
3. the final history (``wall_time`` and any other timing column dropped) and best trial
   from ``result.to_json`` and the best params from ``np.savez`` must equal the reference's
   bit for bit (no pickle anywhere);
4. kills, restarts, kills during a save, steps moved aside (``*.unreadable-*``), temporary
   directories left behind and child errors are counted, with one log line per kill.

Results go to ``benchmarks/results/resume-soak-<backend>.json``. The exit status is 1 if a
strategy's run is not identical, a child fails other than by the SIGKILL, a committed step
is lost, or the run finished before all its kills. Only the public API is used (``vtune.population_search``), so the script survives
internal moves.

Run from the repository root::

    PYTHONPATH=. python benchmarks/resume_soak.py             # 20 kills per strategy, ~10 min
    PYTHONPATH=. python benchmarks/resume_soak.py --quick     # 4 kills, default strategy only
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TMP_MARK = ".orbax-checkpoint-tmp"
STRATEGIES = ("default", "pbt")
SEARCH = dict(population_size=8, generations=20, steps_per_generation=20, seed=7)


# --- the child: one search, its outcome written as JSON and npz -----------------------

def child(argv) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--out", required=True, help="writes OUT.json and OUT.npz")
    parser.add_argument("--generations", type=int, default=SEARCH["generations"])
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    import vtune

    data = vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(16,), batch_size=32)
    space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5),
             "init": vtune.choice(["he_normal", "xavier_uniform"])}
    result = vtune.population_search(
        task, space, **dict(SEARCH, generations=args.generations),
        strategy=None if args.strategy == "default" else args.strategy,
        checkpoint_dir=args.checkpoint_dir, verbose=False)
    result.to_json(args.out + ".json")
    leaves = jax.tree_util.tree_flatten_with_path(result.best.params)[0]
    arrays = {f"leaf{i:03d}": np.asarray(x) for i, (_, x) in enumerate(leaves)}
    paths = np.array([jax.tree_util.keystr(p) for p, _ in leaves])  # a str array, no pickle
    np.savez(args.out + ".npz", paths=paths, **arrays)


# --- the parent -----------------------------------------------------------------------

def is_timing(column: str) -> bool:
    return column == "wall_time" or column.endswith(("_time", "_seconds", "_s")) \
        or column in ("elapsed", "time")


def outcome(prefix: str) -> dict:
    """What must be identical: history without timing, the best trial, the best params."""
    import numpy as np

    doc = json.loads(pathlib.Path(prefix + ".json").read_text())
    history = [{k: v for k, v in row.items() if not is_timing(k)} for row in doc["history"]]
    with np.load(prefix + ".npz", allow_pickle=False) as z:
        params = {"paths": z["paths"].tolist(),
                  "leaves": [(z[k].dtype.str, z[k].shape, z[k].tobytes())
                             for k in sorted(z.files) if k != "paths"]}
    return {"history": history, "best": doc["best"], "params": params}


def first_difference(a: dict, b: dict) -> str | None:
    if a["params"] != b["params"]:
        if a["params"]["paths"] != b["params"]["paths"]:
            return f"best params have other leaves: {a['params']['paths']} vs {b['params']['paths']}"
        for path, x, y in zip(a["params"]["paths"], a["params"]["leaves"], b["params"]["leaves"]):
            if x != y:
                return f"best params leaf {path} differs (dtype/shape {x[:2]} vs {y[:2]})"
    if len(a["history"]) != len(b["history"]):
        return f"history has {len(a['history'])} rows, the reference {len(b['history'])}"
    for i, (x, y) in enumerate(zip(a["history"], b["history"])):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return (f"history row {i} (generation {y.get('generation')}, slot {y.get('slot')}) "
                    f"differs in {keys}: " + ", ".join(f"{k}={x.get(k)!r} vs {y.get(k)!r}"
                                                    for k in keys[:4]))
    if a["best"] != b["best"]:
        return f"best trial differs: {a['best']} vs {b['best']}"
    return None


def launch(strategy: str, out: str, directory: pathlib.Path | None, log: pathlib.Path,
           generations: int):
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child",
           "--strategy", strategy, "--out", out, "--generations", str(generations)]
    if directory is not None:
        cmd += ["--checkpoint-dir", str(directory)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    with open(log, "wb") as err:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


def listing(directory: pathlib.Path) -> dict:
    names = [p.name for p in directory.iterdir()] if directory.exists() else []
    return {"steps": sorted(int(n) for n in names if n.isdigit()),
            "tmp": sorted(n for n in names if TMP_MARK in n),
            "unreadable": sorted(n for n in names if ".unreadable-" in n)}


def temporaries(directory: pathlib.Path) -> set:
    """Save-in-progress directories as (name, inode): orbax names them ``<step>.orbax-
    checkpoint-tmp`` and deletes a stale one before it saves that step again."""
    found = set()
    for p in directory.glob(f"*{TMP_MARK}*") if directory.exists() else ():
        try:
            found.add((p.name, p.stat().st_ino))
        except FileNotFoundError:  # committed or removed meanwhile
            pass
    return found


def latest(state: dict) -> int:
    return max(state["steps"], default=0)


def soak(strategy: str, kills: int, generations: int, rng: random.Random, work: pathlib.Path,
         reference_s: float, generation_s: float) -> dict:
    directory = work / f"ckpt-{strategy}"
    out = str(work / f"soak-{strategy}")
    start = time.perf_counter()
    startup_s = reference_s  # refined from what each launch shows
    save_s = [0.05]
    generation_times = [generation_s]  # refined from commits a launch shows in a row
    log, restarts, launches, errors, lost = [], 0, 0, [], []
    unreadable_seen: set[str] = set()
    while True:
        before = listing(directory)
        seen = temporaries(directory)  # not this launch's
        kill = None
        if len(log) < kills:
            remaining = generations - latest(before)
            kinds = (["save", "random", "startup"], [0.4, 0.45, 0.15]) if remaining >= 3 else \
                (["save", "startup"], [0.3, 0.7]) if remaining >= 2 else (["startup"], [1.0])
            kill = rng.choices(*kinds)[0]
        stderr = work / f"launch-{strategy}-{launches}.log"
        launched = time.perf_counter()
        proc = launch(strategy, out, directory, stderr, generations)
        launches += 1
        restarts += launches > 1
        first_event, tmp_open, last_commit = None, {}, (latest(before), None)
        delay = rng.uniform(0.0, 0.9 * startup_s) if kill == "startup" else None
        killed_at = None
        deadline = launched + 300
        while proc.poll() is None and time.perf_counter() < deadline and kill is not None:
            now = time.perf_counter() - launched
            state, temps = listing(directory), temporaries(directory)
            seen &= temps  # one deleted to be written again is this launch's when it returns
            new_tmp = sorted(temps - seen)
            for n in new_tmp:
                tmp_open.setdefault(n, now)
            for n, t0 in list(tmp_open.items()):
                if n not in temps:  # committed (renamed): a save's length
                    save_s.append(now - t0)
                    del tmp_open[n]
            if first_event is None and (new_tmp or latest(state) > latest(before)):
                first_event = now
            if latest(state) > last_commit[0]:
                if last_commit[1] is not None:
                    generation_times.append((now - last_commit[1])
                                            / (latest(state) - last_commit[0]))
                last_commit = (latest(state), now)
            if kill == "save" and new_tmp and delay is None:
                delay = now + rng.uniform(0.0, statistics.median(save_s))
            if kill == "random" and latest(state) > latest(before) and delay is None:
                # a generation with its save is the training plus the save it waits on
                delay = now + rng.uniform(0.0, 2 * (statistics.median(generation_times)
                                                    + statistics.median(save_s)))
            if kill == "startup" and first_event is not None:
                delay = min(delay, now)  # no further: this kind must not let it progress
            if delay is not None and now >= delay:
                proc.send_signal(signal.SIGKILL)
                killed_at = now
                break
            time.sleep(0.002)
        if kill is None:
            proc.wait(timeout=600)
        elif proc.poll() is None and killed_at is None:  # past the deadline, no trigger
            proc.send_signal(signal.SIGKILL)
            killed_at = time.perf_counter() - launched
        proc.wait()
        if first_event is not None:  # import, compile, restore, first generation
            startup_s = first_event
        after = listing(directory)
        warnings = [line for line in stderr.read_text(errors="replace").splitlines()
                    if "unreadable" in line or "Error" in line or "error" in line]
        moved = sorted(set(after["unreadable"]) - unreadable_seen)
        unreadable_seen |= set(after["unreadable"])
        for name in moved:  # a step that was committed before this launch and is now aside
            step = int(name.split(".")[0])
            if step in before["steps"]:
                lost.append({"launch": launches, "step": step, "moved_to": name,
                             "steps_before": before["steps"], "tmp_before": before["tmp"],
                             "stderr": warnings[-6:]})
        if proc.returncode == 0:
            break
        if proc.returncode != -signal.SIGKILL or killed_at is None:
            errors.append({"launch": launches, "returncode": proc.returncode,
                           "directory_before": before,
                           "stderr_tail": stderr.read_text(errors="replace")[-3000:]})
            if len(errors) >= 3:
                break
            continue
        left = sorted(name for name, _ in temporaries(directory) - seen)
        landed_in_save = bool(left)
        log.append({"kill": len(log) + 1, "kind": kill, "at_s": round(killed_at, 3),
                    "during_save": landed_in_save, "latest_before": latest(before),
                    "latest_after": latest(after), "tmp_left": left,
                    "moved_aside_on_restore": moved, "child_warnings": warnings[-3:]})
        print(f"  {strategy} kill {len(log):2d} {kill:7s} at {killed_at:6.2f}s"
              f"{' during save' if landed_in_save else '            '} "
              f"step {latest(before):2d} -> {latest(after):2d}"
              f"{' moved aside ' + str(moved) if moved else ''}", flush=True)
    wall = time.perf_counter() - start
    final = listing(directory)
    return {"out": out, "finished": proc.returncode == 0, "kills": len(log),
            "kills_requested": kills, "restarts": restarts, "launches": launches,
            "kills_by_kind": {k: sum(e["kind"] == k for e in log)
                              for k in ("save", "random", "startup")},
            "kills_during_save": sum(e["during_save"] for e in log),
            "steps_moved_aside": len(final["unreadable"]),
            "unreadable_dirs": final["unreadable"], "committed_steps_lost": lost,
            "tmp_dirs_left": len(final["tmp"]), "final_steps": final["steps"],
            "child_errors": errors, "median_save_s": statistics.median(save_s),
            "median_generation_s": statistics.median(generation_times),
            "wall_s": wall, "kill_log": log}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, help="SIGKILLs per strategy (default 20; 4 "
                        "with --quick)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        help="'default' or registry names")
    parser.add_argument("--generations", type=int, default=SEARCH["generations"])
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill schedule")
    parser.add_argument("--quick", action="store_true",
                        help="4 kills, default strategy only; writes only with --out")
    parser.add_argument("--out", help="results JSON (default: "
                        "benchmarks/results/resume-soak-<backend>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.kills = 4 if args.kills is None else args.kills
        if "--strategies" not in argv:
            args.strategies = ["default"]

    args.kills = 20 if args.kills is None else args.kills
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from common import environment, write_result

    env = environment()
    rng = random.Random(args.seed)
    work = pathlib.Path(tempfile.mkdtemp(prefix="vtune-soak-"))
    print(f"work directory {work}", flush=True)
    report, failed = {}, False
    try:
        for strategy in args.strategies:
            ref = str(work / f"reference-{strategy}")
            t0 = time.perf_counter()
            proc = launch(strategy, ref, None, work / f"reference-{strategy}.log",
                          args.generations)
            proc.wait()
            reference_s = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit("the reference run failed:\n" + (
                    work / f"reference-{strategy}.log").read_text()[-3000:])
            wall = sorted({(r["generation"], r["wall_time"]) for r in
                           json.loads(pathlib.Path(ref + ".json").read_text())["history"]})
            generation_s = statistics.median(b[1] - a[1] for a, b in zip(wall, wall[1:]))
            print(f"{strategy}: reference {reference_s:.1f} s ({generation_s * 1e3:.0f} ms a "
                  f"generation); soaking with {args.kills} kills", flush=True)
            run = soak(strategy, args.kills, args.generations, rng, work, reference_s,
                       generation_s)
            diff = first_difference(outcome(run["out"]), outcome(ref)) if run["finished"] \
                else "the soaked run did not finish"
            run.pop("out")
            run.update(identical=diff is None, difference=diff, reference_wall_s=reference_s)
            run["failures"] = [reason for reason, bad in [
                (f"not identical: {diff}", diff is not None),
                (f"{len(run['child_errors'])} child errors", run["child_errors"]),
                (f"committed steps lost: {run['committed_steps_lost']}",
                 run["committed_steps_lost"]),
                (f"only {run['kills']} of {args.kills} kills before it finished",
                 run["kills"] < args.kills)] if bad]
            failed |= bool(run["failures"])
            report[strategy] = run
            print(f"{strategy}: {run['kills']} kills ({run['kills_during_save']} during a "
                  f"save), {run['restarts']} restarts, {run['steps_moved_aside']} steps moved "
                  f"aside, {len(run['child_errors'])} child errors, identical: "
                  f"{run['identical']}{'' if diff is None else ' -- ' + diff}; "
                  f"{run['wall_s']:.0f} s", flush=True)
    finally:
        if args.keep or failed:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = {**env, "command": shlex.join(["python", "benchmarks/resume_soak.py", *argv]),
              "search": {**SEARCH, "generations": args.generations, "task":
                         "mlp_classifier(synthetic 256x16, 4 classes, hidden (16,), batch 32)",
                         "checkpoint_every": 1, "max_to_keep": 3},
              "kill_schedule_seed": args.seed, "strategies": report,
              "all_identical": all(r["identical"] for r in report.values()),
              "ok": not failed}
    out = args.out or (None if args.quick else
                       f"benchmarks/results/resume-soak-{env['backend']}.json")
    if out:
        write_result(out, result)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""A small search run in a child process (device count and process count set by the parent).

Usage: python sharded_search.py OUT.json CHECKPOINT_DIR|-
Environment: JAX_NUM_CPU_DEVICES; BUCKETING=True|False searches widths too (no
dropout), trained bucketed or in one masked program; for multi-process runs VTUNE_COORDINATOR,
VTUNE_NUM_PROCESSES and VTUNE_PROCESS_ID; EXIT_AFTER_SAVE=k stops the process
(exit code 3) once the checkpoint of generation k is written, like a preemption.
"""

import json
import os
import sys

import jax

if "VTUNE_COORDINATOR" in os.environ:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=os.environ["VTUNE_COORDINATOR"],
                               num_processes=int(os.environ["VTUNE_NUM_PROCESSES"]),
                               process_id=int(os.environ["VTUNE_PROCESS_ID"]))

import numpy as np  # noqa: E402

import vtune  # noqa: E402
from vtune import program as program_lib  # noqa: E402

if "EXIT_AFTER_SAVE" in os.environ:
    from vtune.checkpoint import Checkpointer

    save = Checkpointer.save

    def save_then_exit(self, generation, *args, **kwargs):
        save(self, generation, *args, **kwargs)
        if generation == int(os.environ["EXIT_AFTER_SAVE"]):
            self.manager.wait_until_finished()
            os._exit(3)

    Checkpointer.save = save_then_exit

out, ckpt = sys.argv[1], (None if sys.argv[2] == "-" else sys.argv[2])
data = vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)
bucketing = os.environ.get("BUCKETING")
if bucketing is None:
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(16,), batch_size=32)
    space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5)}
else:
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(16,), batch_size=32, dropout=False)
    space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "width": vtune.intuniform(1, 16)}
result = vtune.population_search(task, space, population_size=8, generations=3,
                                 steps_per_generation=10, seed=3, checkpoint_dir=ckpt,
                                 verbose=False, bucketing=bucketing == "True")
programs = program_lib.cached_programs()
(program,) = [p for p in programs if not p.caps]  # the full allocation's
hp = {k: np.repeat(np.asarray(v)[None], 8) for k, v in result.best.encoded_hparams.items()}
pop = program.init(np.uint32(0), *vtune.sharding.place((np.arange(8, dtype=np.int32), hp),
                                                       vtune.sharding.population(program.mesh)))
leaf = jax.tree.leaves(pop.params)[0]
if jax.process_index() == 0:
    with open(out, "w") as f:
        json.dump({
            "devices": jax.device_count(), "processes": jax.process_count(),
            "train_traces": program.traces["train"],
            "bucket_traces": [p.traces["train"] for p in programs if p.caps],
            "slots_per_device": sorted({s.data.shape[0] for s in leaf.addressable_shards}),
            "history": [{k: v for k, v in r.items() if k != "wall_time"} for r in result.history],
            "best_params": [np.asarray(x).tolist() for x in jax.tree.leaves(result.best.params)],
            "top": [[t.trial_id, t.generation] for t in result.top_trials],
            "top_params": [np.asarray(x).tolist() for t in result.top_trials
                           for x in jax.tree.leaves(t.params)],
        }, f)

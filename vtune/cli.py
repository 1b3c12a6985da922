"""The ``vtune`` command: a population search on the bundled digits task.

Example:
    $ vtune                          # the default search, about a minute on 2 CPU cores
    $ vtune --population 64 --generations 12 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time

import vtune


def default_space() -> vtune.Space:
    """The default space, after the seed advice: learning rate and weight decay
    on a log scale, dropout on a linear scale, Xavier/He/LeCun init schemes."""
    return vtune.Space({
        "learning_rate": vtune.loguniform(1e-4, 1.0),
        "weight_decay": vtune.loguniform(1e-6, 1e-2),
        "dropout": vtune.uniform(0.0, 0.7),
        "init": vtune.choice(["he_normal", "he_uniform", "xavier_uniform", "xavier_normal",
                              "lecun_normal"]),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vtune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=32, help="trials trained at once")
    parser.add_argument("--generations", type=int, default=8, help="prune/refill rounds")
    parser.add_argument("--steps", type=int, default=150, help="steps per generation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        result = vtune.population_search(
            vtune.tasks.mlp_classifier(), default_space(), population_size=args.population,
            generations=args.generations, steps_per_generation=args.steps,
            objective="val_loss", seed=args.seed, verbose=not args.quiet)
    except (ValueError, TypeError) as e:
        print(f"vtune: error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(result.summary())
    if result.best is not None:
        print(f"validation accuracy of the best trial: {result.best.metrics['val_accuracy']:.4f} "
              f"({len(result.history)} trial-generations in {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

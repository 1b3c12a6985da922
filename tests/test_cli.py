"""The `vtune` command: the default search, `vtune run CONFIG.toml`, `vtune report DIR`."""

import pathlib
import textwrap

import pytest

import vtune
import vtune.cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytest.importorskip("matplotlib")


def test_cli_reports_bad_arguments_in_one_line(capsys):
    assert vtune.cli.main(["--population", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vtune: error: population_size must be a positive int, got 0")


TASK_MODULE = '''
import vtune

def build(hidden=16):
    data = vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)
    return vtune.tasks.mlp_classifier(data, hidden_sizes=(hidden,), batch_size=32)
'''

CONFIG = '''
task = "vtune_cli_test_task:build"
strategy = "truncation"
population_size = 4
generations = 2
steps_per_generation = 5
objective = "val_loss"
seed = 0
out_dir = "out"
checkpoint_dir = "ckpt"

[task_args]
hidden = 8

[space]
learning_rate = {loguniform = [1e-3, 1e-1]}
dropout = {fixed = 0.1}
init = {choice = ["he_normal", "zeros"]}
'''

FILES = ["history.csv", "result.json", "top.txt", "diagnosis.txt", "diagnosis.json",
         "learning_curves.png", "objective_vs_hparams.png", "optimization_history.png"]


def assert_lineage_only_for_a_cloned_winner(out_dir):
    """lineage.png exists exactly when top.txt does not say the winner was never cloned."""
    fresh = "no lineage figure" in (out_dir / "top.txt").read_text()
    assert (out_dir / "lineage.png").exists() != fresh
    return fresh


def test_run_then_report_end_to_end(tmp_path, capsys):
    (tmp_path / "vtune_cli_test_task.py").write_text(TASK_MODULE)
    config = tmp_path / "search.toml"
    config.write_text(CONFIG)
    assert vtune.cli.main(["run", str(config), "--quiet", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "best trial" in out and "Fit diagnosis of" in out
    assert out.count("\n   ") >= 3  # three ranked rows under the table's header
    for name in FILES:
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    fresh = assert_lineage_only_for_a_cloned_winner(tmp_path / "out")
    run_history = (tmp_path / "out" / "history.csv").read_text()
    assert run_history.count("\n") == 1 + 4 * 2

    # report from the checkpoint: nothing is trained, the same history comes back.
    assert vtune.cli.main(["report", str(tmp_path / "ckpt"), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "Fit diagnosis of" in out and f"wrote {9 - fresh} files" in out
    report = tmp_path / "ckpt-report"
    for name in FILES:
        assert (report / name).stat().st_size > 0, name
    assert assert_lineage_only_for_a_cloned_winner(report) == fresh
    assert (report / "history.csv").read_text() == run_history

    # report from a run's out_dir (its result.json), without plots.
    assert vtune.cli.main(["report", str(tmp_path / "out"), "--no-plots",
                           "--out-dir", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "history.csv").read_text() == run_history
    assert not (tmp_path / "again" / "lineage.png").exists()


@pytest.mark.parametrize("config, message", [
    ("population_size = 4\n[space]\nlr = {loguniform = [1e-3, 1e-1]}",
     "learning_rate"),  # a name the task does not consume: the error lists the accepted ones
    ("colour = 'red'\n[space]\nlearning_rate = {fixed = 0.1}", "unknown key(s) ['colour']"),
    ("[space]\nlearning_rate = {logunifrom = [1e-3, 1e-1]}",
     "space.learning_rate = {'logunifrom': [0.001, 0.1]}: give exactly one of"),
    ("[space]\nlearning_rate = {loguniform = [1e-1, 1e-3]}", "space.learning_rate: loguniform"),
    ("[space]\nlearning_rate = 0.1", "space.learning_rate = 0.1: write a table such as"),
    ("[space]\ndropout = {choice = 0.1}", "choice takes a list"),
    ("task = 'mnist_resnet'\n[space]\nlearning_rate = {fixed = 0.1}",
     "task 'mnist_resnet' is neither a preset"),
    ("task = 'no_such_module_xyz:build'\n[space]\nlearning_rate = {fixed = 0.1}",
     "cannot import 'no_such_module_xyz'"),
    ("task = 'vtune.tasks:nothing'\n[space]\nlearning_rate = {fixed = 0.1}",
     "has no function 'nothing'"),
    ("task = 'vtune.datasets:digits'\n[space]\nlearning_rate = {fixed = 0.1}",
     "returned Dataset, not a vtune.Task"),
    ("strategy = 'annealing'\n[space]\nlearning_rate = {fixed = 0.1}",
     "strategy 'annealing' is unknown"),
    ("strategy = {name = 'truncation', fraction = 2.0}\n[space]\nlearning_rate = {fixed = 0.1}",
     "fraction must be in (0, 1)"),
    ("population_size = 0\n[space]\nlearning_rate = {fixed = 0.1}",
     "population_size must be a positive int, got 0"),
    ("objective = 'val_f1'\n[space]\nlearning_rate = {fixed = 0.1}", "objective 'val_f1'"),
    ("task = 'digits_mlp'", "no [space] table"),
    ("[diagnose]\nfit_acc = 0.8\n[space]\nlearning_rate = {fixed = 0.1}",
     "diagnose: unknown threshold(s) ['fit_acc']"),
    ("[space\nlearning_rate = 1", "is not valid TOML"),
])
def test_bad_configs_fail_with_one_line_naming_the_value(tmp_path, capsys, config, message):
    path = tmp_path / "bad.toml"
    path.write_text(config)
    assert vtune.cli.main(["run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("vtune: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not (tmp_path / "bad-results").exists()  # nothing written, nothing trained


def test_missing_files_and_directories_are_one_line_errors(tmp_path, capsys):
    assert vtune.cli.main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    assert vtune.cli.main(["run"]) == 2
    assert "vtune run --example" in capsys.readouterr().err
    assert vtune.cli.main(["report", str(tmp_path)]) == 2
    assert "holds neither a vtune checkpoint" in capsys.readouterr().err
    assert vtune.cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_help_teaches_by_example(capsys):
    with pytest.raises(SystemExit) as e:
        vtune.cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in ("vtune run CONFIG.toml", "vtune report DIR", "vtune run --example",
                 "[space]", "{loguniform = [1e-4, 1.0]}", "{choice = [", "{fixed = ",
                 "checkpoint_dir", "exit status"):
        assert text in out, text
    with pytest.raises(SystemExit):
        vtune.cli.main(["run", "--help"])
    assert "[space]" in capsys.readouterr().out


def test_the_example_config_is_the_default_search(tmp_path, capsys):
    assert vtune.cli.main(["run", "--example"]) == 0
    text = capsys.readouterr().out
    assert text == vtune.cli.EXAMPLE_CONFIG == (ROOT / "docs" / "digits.toml").read_text()
    config = vtune.cli.load_config(ROOT / "docs" / "digits.toml")
    assert config["space"] == vtune.cli.default_space()
    search = dict(config["search"])
    assert search.pop("strategy").name == vtune.strategies.DEFAULT
    assert search == {"population_size": 32, "generations": 8, "steps_per_generation": 150,
                      "objective": "val_loss", "seed": 0}
    task = vtune.cli.default_task()
    assert (config["task"].name, config["task"].batch_size) == (task.name, task.batch_size)
    assert config["out_dir"] == ROOT / "docs" / "digits-results"


def test_the_default_search_tunes_structure_and_batch_size_within_its_allocation():
    """Width, depth and batch size as the seed advice has them, the task allocated at
    their largest values (a space above the allocation would be refused)."""
    space, task = vtune.cli.default_space(), vtune.cli.default_task()
    assert space["width"] == vtune.choice([16, 32, 64, 128])
    assert space["depth"] == vtune.intuniform(1, 3)
    assert space["batch_size"] == vtune.choice([32, 64, 128])
    assert {"learning_rate", "weight_decay", "dropout", "init"} <= set(space.names)
    assert task.name.startswith("mlp_classifier(64-128-128-128-10,")
    assert task.batch_size == max(space["batch_size"].options)
    built = vtune.program.build(task, space, steps=1)  # traced only, nothing compiled
    assert {"width", "depth", "batch_size"} <= set(built.table.names)


def test_presets_and_task_args(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""
        task = "synthetic_mlp"
        [task_args]
        hidden_sizes = [8, 8]
        optimizer = "sgdw"
        [space]
        momentum = {uniform = [0.0, 0.9]}
        width = {intuniform = [4, 64], log = true}
        """))
    config = vtune.cli.load_config(path)
    assert config["task"].name.startswith("mlp_classifier(16-8-8-4")
    assert config["space"]["width"] == vtune.intuniform(4, 64, log=True)
    assert config["out_dir"] == tmp_path / "c-results"


def test_a_config_sets_the_timeout_and_a_bad_one_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('task = "synthetic_mlp"\ntimeout = 90\n[space]\n'
                    'learning_rate = {loguniform = [1e-3, 1e-1]}\n')
    config = vtune.cli.load_config(path)
    assert vtune.search.SearchSpec.create(config["space"], **config["search"]).timeout == 90.0
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        vtune.search.SearchSpec.create(config["space"], timeout="90")


def test_plain_vtune_runs_the_default_search_on_one_cpu_device_per_core(tmp_path):
    """The default search (its structure and batch size included) in a fresh process,
    which may still split the CPU; one compile of the default program, so one test."""
    import os
    import pathlib
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    env.update(PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[1]), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "vtune", "--population", "4", "--generations",
                          "1", "--steps", "3", "--quiet"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cores = max(d for d in range(1, (os.cpu_count() or 1) + 1) if 4 % d == 0)
    assert (f"on {cores} CPU devices" in out.stdout) == (cores > 1)
    assert "validation accuracy of the best trial" in out.stdout
    assert "best trial" in out.stdout
    for name in ("learning_rate=", "width=", "depth=", "batch_size="):
        assert name in out.stdout, name

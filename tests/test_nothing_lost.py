"""Nothing lost: a valid checkpoint is never touched by a call that is another search,
and every bad argument is refused before anything is written or compiled."""

import functools
import os
import signal
import subprocess
import sys
import time

import jax
import optax
import pytest
from flax import nnx

import vtune
from helpers.digest import tree_digest
import vtune.cli

SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}
ARGS = dict(population_size=4, generations=2, steps_per_generation=3, verbose=False)


def net_task(data, width, optimizer=optax.adamw):
    """The same model class and task name at another width: what a user edits in place."""

    class Net(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc1 = nnx.Linear(16, width, rngs=rngs)
            self.fc2 = nnx.Linear(width, 4, rngs=rngs)

        def __call__(self, x):
            return self.fc2(nnx.relu(self.fc1(x)))

    return vtune.from_nnx(Net, data, batch_size=32, optimizer=optimizer, name="net")


@pytest.fixture(scope="module")
def saved(tiny_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    vtune.population_search(net_task(tiny_data, 8), SPACE, checkpoint_dir=d, **ARGS)
    return d


@pytest.mark.parametrize("change, named", [
    (lambda data: net_task(data, 12), "params"),
    (lambda data: net_task(data, 8, functools.partial(optax.adamw, b1=0.8)), "optimizer"),
])
def test_another_task_under_the_same_name_is_refused_untouched(tiny_data, saved, change, named):
    before = tree_digest(saved)
    with pytest.raises(ValueError, match=f"belongs to another search; .*{named}: checkpoint has"):
        vtune.population_search(change(tiny_data), SPACE, checkpoint_dir=saved, **ARGS)
    assert tree_digest(saved) == before
    assert not [p for p in saved.iterdir() if "unreadable" in p.name]


def test_overwrite_takes_only_a_real_bool(tiny_data, saved):
    before = tree_digest(saved)
    for flag in ("False", "no", 0, None):
        with pytest.raises(TypeError, match="overwrite must be True or False"):
            vtune.population_search(net_task(tiny_data, 8), SPACE, checkpoint_dir=saved,
                                    overwrite=flag, **ARGS)
    assert tree_digest(saved) == before


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(checkpoint_dir=""), ValueError, "checkpoint_dir is an empty string"),
    (dict(checkpoint_dir=3), TypeError, "checkpoint_dir must be a path"),
    (dict(seed=2 ** 32), ValueError, r"seed must be an int in \[0, 2\*\*32\)"),
    (dict(seed=-1), ValueError, "seed must be an int"),
    (dict(steps_per_generation=2 ** 20, generations=2 ** 12), ValueError, "int32 step counter"),
    (dict(devices="cpu"), TypeError, "devices must be a sequence of jax.Device"),
    (dict(devices=["cpu:0"]), TypeError, "devices must be jax.Device objects"),
    (dict(verbose="yes"), TypeError, "verbose must be True or False"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tiny_task, tmp_path, compiles,
                                                              kwargs, error, message):
    args = {**ARGS, "checkpoint_dir": tmp_path / "ckpt", **kwargs}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # an empty checkpoint_dir must not write here either
    try:
        with pytest.raises(error, match=message):
            vtune.population_search(tiny_task, SPACE, **args)
    finally:
        os.chdir(cwd)
    assert list(tmp_path.iterdir()) == []
    assert sum(compiles.values()) == 0


def test_one_device_and_duplicates_are_clear_errors(tiny_task, compiles):
    device = jax.devices()[0]
    with pytest.raises(TypeError, match=r"got one device .*; pass \["):
        vtune.population_search(tiny_task, SPACE, devices=device, **ARGS)
    with pytest.raises(ValueError, match="devices lists a device more than once"):
        vtune.population_search(tiny_task, SPACE, devices=[device, device], **ARGS)
    assert sum(compiles.values()) == 0


def test_checkpoint_dir_that_is_a_file_or_under_one(tiny_task, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("keep me")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        vtune.population_search(tiny_task, SPACE, checkpoint_dir=f, **ARGS)
    with pytest.raises(ValueError, match="lies under the file"):
        vtune.population_search(tiny_task, SPACE, checkpoint_dir=f / "sub", **ARGS)
    assert f.read_text() == "keep me"


def test_a_truncated_spec_is_a_clear_error_everywhere(tiny_task, tmp_path, capsys):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "vtune_spec.json").write_text('{"space": {"learning_rate": ')
    with pytest.raises(ValueError, match="vtune_spec.json' is unreadable"):
        vtune.population_search(tiny_task, SPACE, checkpoint_dir=d, **ARGS)
    with pytest.raises(ValueError, match="is unreadable"):
        vtune.load(d)
    assert vtune.cli.main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vtune: error:") and "unreadable" in err and len(err.splitlines()) == 1


def test_from_nnx_refuses_a_module_instance(tiny_data):
    class Net(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc = nnx.Linear(16, 4, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    with pytest.raises(TypeError, match="from_nnx: model must be the module class"):
        vtune.from_nnx(Net({}, nnx.Rngs(0)), tiny_data)


CHILD = """
import sys, vtune
data = vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)
task = vtune.tasks.mlp_classifier(data, hidden_sizes=(16,), batch_size=32)
vtune.population_search(task, {"learning_rate": vtune.loguniform(1e-3, 1e-1)},
                        population_size=4, generations=400, steps_per_generation=2,
                        checkpoint_dir=sys.argv[1], max_to_keep=2, verbose=False)
"""


def test_ctrl_c_during_a_save_stops_cleanly(tmp_path):
    d = tmp_path / "ckpt"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(d)], stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if d.exists() and any("orbax-checkpoint-tmp" in p.name for p in d.iterdir()):
            break
        time.sleep(0.005)
    assert child.poll() is None, child.stderr.read()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert "KeyboardInterrupt: search interrupted; generation" in err
    assert "run the same call again to resume" in err
    assert "Handler Commit" not in err and "cannot schedule new futures" not in err
    assert not [p for p in d.iterdir() if "tmp" in p.name]
    result = vtune.load(d)
    assert result.history and max(r["generation"] for r in result.history) >= 0


def test_a_first_start_killed_before_its_spec_was_written_starts_again(tiny_task, tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "vtune_spec.json.tmp").write_text('{"space": ')  # killed between write and rename
    result = vtune.population_search(tiny_task, SPACE, checkpoint_dir=d, **ARGS)
    assert (d / "vtune_spec.json").exists() and len(result.history) == 8


@pytest.mark.parametrize("layer, message", [
    (lambda hp, rngs: nnx.Dropout(hp["dropout"], rngs=rngs), "use vtune.nn.Dropout"),
    (lambda hp, rngs: vtune.nn.HParam(hp["dropout"]), "has no hp_name"),
])
def test_first_day_model_mistakes_are_explained_before_compiling(tiny_data, compiles, layer,
                                                                 message):
    class Net(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc = nnx.Linear(16, 4, rngs=rngs)
            self.extra = layer(hp, rngs)

        def __call__(self, x):
            return self.fc(x)

    task = vtune.from_nnx(Net, tiny_data, batch_size=32)
    with pytest.raises(ValueError, match=message):
        vtune.population_search(task, {"dropout": vtune.uniform(0.0, 0.5)}, **ARGS)
    assert sum(compiles.values()) == 0


@pytest.mark.parametrize("data, message", [
    (lambda d: (d.x_train, d.y_train), "data must be a vtune.datasets.Dataset"),
    (lambda d: vtune.datasets.Dataset(d.x_train, d.y_train.astype("float32"), d.x_val,
                                      d.y_val.astype("float32")), "integer class labels"),
])
def test_classifier_data_mistakes(tiny_data, data, message):
    with pytest.raises((TypeError, ValueError), match=message):
        vtune.tasks.mlp_classifier(data(tiny_data))
    with pytest.raises(TypeError, match="hidden_sizes must be a sequence"):
        vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=8)


def test_labels_beyond_the_outputs_and_broadcasting_regressions(tiny_data, compiles):
    class Two(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc = nnx.Linear(16, 2, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match="does not fit a model with 2 outputs"):
        vtune.population_search(vtune.from_nnx(Two, tiny_data, batch_size=32), SPACE, **ARGS)
    d = tiny_data
    reg = vtune.datasets.Dataset(d.x_train, d.y_train.astype("float32"), d.x_val,
                                 d.y_val.astype("float32"))

    class One(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc = nnx.Linear(16, 1, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    task = vtune.from_nnx(One, reg, batch_size=32, classification=False,
                          loss=lambda p, y: ((p - y) ** 2).mean())
    with pytest.raises(ValueError, match=r"predictions have shape \(32, 1\) but the targets "
                                         r"\(32,\)"):
        vtune.population_search(task, SPACE, **ARGS)
    assert sum(compiles.values()) == 0


def test_task_contract_mistakes_are_named(tiny_data, compiles):
    import optax

    def init(key, hp):
        return {"w": jax.random.normal(key, (16, 4))}, {}

    def per_example(params, state, batch, key, hp):
        x, y = batch
        return optax.softmax_cross_entropy_with_integer_labels(x @ params["w"], y), state

    def metrics(params, state, data, hp):
        x, y = data["val"]
        return {"val_loss": optax.softmax_cross_entropy_with_integer_labels(x @ params["w"], y)
                .mean()}

    def vector_metrics(params, state, data, hp):
        x, y = data["val"]
        return {"val_loss": optax.softmax_cross_entropy_with_integer_labels(x @ params["w"], y)}

    def no_state(params, state, batch, key, hp):
        return per_example(params, state, batch, key, hp)[0].mean()

    def mean_loss(p, s, b, k, hp):
        return per_example(p, s, b, k, hp)[0].mean(), s

    cases = [(dict(loss=per_example), "loss must return the mean"),
             (dict(loss=no_state), r"must return \(loss, state\)"),
             (dict(init=lambda k, hp: init(k, hp)[0]), r"init\(key, hp\) must return"),
             (dict(metrics=vector_metrics), r"metrics must be scalars, got shapes")]
    for kwargs, message in cases:
        fns = {**dict(init=init, loss=mean_loss, metrics=metrics), **kwargs}
        task = vtune.Task(data=tiny_data, batch_size=32, name="raw", **fns)
        with pytest.raises((TypeError, ValueError), match=message):
            vtune.population_search(task, SPACE, **ARGS)
    assert sum(compiles.values()) == 0


def test_a_string_for_a_numeric_hyperparameter_and_a_broken_strategy(tiny_task, compiles):
    with pytest.raises(TypeError, match="'big' is not a number; learning_rate takes numbers"):
        vtune.population_search(tiny_task, {"learning_rate": vtune.fixed("big")}, **ARGS)
    broken = vtune.strategies.Strategy(init=None, ask=None, tell=None, name="mine")
    with pytest.raises(TypeError, match=r"strategy 'mine': \['init', 'ask', 'tell'\] must be "
                                        r"callable"):
        vtune.population_search(tiny_task, SPACE, strategy=broken, **ARGS)
    assert sum(compiles.values()) == 0


def test_vtune_run_with_a_task_module_that_does_not_parse(tmp_path, capsys):
    (tmp_path / "broken_task_mod.py").write_text("def build(:\n")
    config = tmp_path / "search.toml"
    config.write_text('task = "broken_task_mod:build"\n[space]\n'
                      'learning_rate = {loguniform = [1e-3, 1e-1]}\n')
    assert vtune.cli.main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "broken_task_mod.py:1: syntax error" in err

"""A one-hidden-layer relu MLP written from vtune's parameter dict, for plain optax loops."""

import jax
import optax


def forward(params, x):
    """The relu MLP of ``params["mlp"]``: one hidden layer, then the output layer."""
    hidden, out = params["mlp"]["hidden"][0], params["mlp"]["out"]
    h = jax.nn.relu(x @ hidden["kernel"] + hidden["bias"])
    return h @ out["kernel"] + out["bias"]


def mean_ce(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()

"""Model builders: a recurrent network over sequences, from Keras's layers or the essay's cells.

`build_model` assembles input → (embedding) → recurrent layers → head. For the cells Keras has
(SimpleRNN, LSTM, GRU) it takes Keras's built-in layer by default, keeping its defaults (tanh,
sigmoid, bias, no recurrent dropout, not unrolled), which is what lets Keras pick the fused cuDNN
kernel when a GPU is visible; on a CPU the same model runs Keras's generic loop. The variants run
the cells of `kala.cells` in `keras.layers.RNN`, as can the three others
(`implementation="essay"`).

This module imports only `kala.cells` and `kala.checks` from kala.
"""

import bisect

import keras
import numpy as np

from kala import cells, checks

# Every cell by name: Keras's built-in layer (None where Keras has none) and the essay cell.
CELLS = {
    "simple_rnn": (keras.layers.SimpleRNN, cells.SimpleRNNCell),
    "lstm": (keras.layers.LSTM, cells.LSTMCell),
    "gru": (keras.layers.GRU, cells.GRUCell),
    "peephole_lstm": (None, cells.PeepholeLSTMCell),
    "coupled_lstm": (None, cells.CoupledLSTMCell),
    "lstm1997": (None, cells.LSTM1997Cell),
}
IMPLEMENTATIONS = ("auto", "builtin", "essay")
# Each initialization and the cells it applies to.
INITIALIZATIONS = {
    # Keras's: Glorot input kernels, orthogonal recurrent kernels, biases 0 but the forget
    # gate's 1 (Jozefowicz et al. 2015).
    "default": tuple(CELLS),
    # The forget gate's bias at 0, as before Jozefowicz et al. 2015 (Gers et al. 2000).
    "zero_forget_bias": ("lstm", "peephole_lstm", "coupled_lstm"),
    # Tallec & Ollivier 2018: forget biases log U[1, max_lag - 1], input biases minus those.
    "chrono": ("lstm", "peephole_lstm", "coupled_lstm"),
    # Le et al. 2015: a ReLU SimpleRNN whose recurrent kernel starts as the identity.
    "irnn": ("simple_rnn",),
}
HEADS = ("sequence", "steps")
# How the recipes name what they compare: a cell with its default initialization ("lstm"), or a
# cell and another initialization ("lstm+chrono").
VARIANTS = (*CELLS, *(f"{cell}+{name}" for name, applies_to in INITIALIZATIONS.items()
                      if name != "default" for cell in applies_to))


def build_model(
    cell="lstm",
    units=64,
    *,
    input_features=None,
    vocab_size=None,
    embedding_dim=32,
    mask_padding=False,
    input_scale=None,
    output_scale=None,
    num_layers=1,
    bidirectional=False,
    dropout_rate=0.0,
    head="sequence",
    num_classes=None,
    output_units=1,
    input_name=None,
    use_cudnn="auto",
    implementation="auto",
    initialization="default",
    max_lag=None,
    name=None,
):
    """Builds a recurrent Keras model.

    Args:
        cell: `"simple_rnn"`, `"lstm"`, `"gru"`, or one of the essay's variants:
            `"peephole_lstm"`, `"coupled_lstm"`, `"lstm1997"` (see `kala.cells`).
        units: size of each recurrent layer's state.
        input_features: for continuous inputs of shape `(batch, time, input_features)`.
        vocab_size: for token ids of shape `(batch, time)`, embedded before the recurrent layers.
            Give exactly one of `input_features` and `vocab_size`.
        embedding_dim: size of the token embedding.
        mask_padding: treat padding as padding: with token ids, id 0; with continuous inputs, a
            step whose features are all exactly 0 (as `tf.data`'s `padded_batch` pads). Padded
            steps leave the state as it was, so a sequence-level head reads the last real step.
            Pad on the right (cuDNN takes only right-padded masks).
        input_scale: for continuous inputs, `(mean, std)` (numbers, or one per feature): the
            model standardises its inputs itself, so that it reads and serves raw values
            (`keras.layers.Normalization` with these fixed statistics).
        output_scale: for regression, `(mean, std)`: the linear output is multiplied by `std`
            and `mean` is added, so the model predicts in the data's own units.
        num_layers: recurrent layers stacked on each other.
        bidirectional: run each recurrent layer forwards and backwards and concatenate.
        dropout_rate: dropout on the output of each recurrent layer (0 disables it); it keeps
            the cuDNN kernel available, unlike recurrent dropout.
        head: `"sequence"` for one prediction per sequence (many-to-one), `"steps"` for one per
            time step (many-to-many).
        num_classes: for classification: the head gives a softmax over `num_classes` classes,
            in an output named `"probabilities"`. Leave None for regression.
        output_units: for regression: size of the linear output named `"prediction"`.
        input_name: name of the model's input, which becomes the serving signature's input key;
            defaults to `"sequence"` for continuous inputs and `"tokens"` for token ids.
        use_cudnn: `"auto"` lets LSTM and GRU use cuDNN on a GPU; False forces the generic loop
            (used for CPU-servable exports).
        implementation: `"builtin"` for Keras's layer, `"essay"` for the cell of `kala.cells`
            in `keras.layers.RNN` (same weights, never cuDNN), `"auto"` for the built-in layer
            where Keras has one.
        initialization: one of `INITIALIZATIONS`: `"default"` (Keras's, with the forget
            gate's bias at 1), `"zero_forget_bias"`, `"chrono"` (needs `max_lag`) for the LSTMs
            with a forget gate, or `"irnn"` for the SimpleRNN.
        max_lag: for `"chrono"`: the longest time lag the task has, in steps (at least 3).
        name: the model's name; defaults to `cell`.

    Returns:
        A functional `keras.Model` whose input has dynamic batch and time dimensions.

    Raises:
        ValueError: an argument is outside the values listed above.
    """
    checks.one_of("cell", cell, CELLS)
    checks.one_of("implementation", implementation, IMPLEMENTATIONS)
    checks.one_of("initialization", initialization, INITIALIZATIONS)
    checks.one_of("head", head, HEADS)
    checks.one_of("use_cudnn", use_cudnn, ("auto", False))
    builtin, essay_cell = CELLS[cell]
    if implementation == "builtin" and builtin is None:
        raise ValueError(
            f"Keras has no built-in layer for cell {cell!r}; cells with one: "
            f"{', '.join(name for name, (layer, _) in CELLS.items() if layer)}. Received: "
            "implementation='builtin'")
    if cell not in INITIALIZATIONS[initialization]:
        raise ValueError(
            f"`initialization={initialization!r}` applies to "
            f"{', '.join(INITIALIZATIONS[initialization])}. Received: cell={cell!r}")
    if (initialization == "chrono") != (max_lag is not None):
        raise ValueError("`max_lag` goes with `initialization='chrono'` and only with it. "
                         f"Received: initialization={initialization!r}, max_lag={max_lag!r}")
    if (input_features is None) == (vocab_size is None):
        raise ValueError(
            "Give exactly one of `input_features` (continuous inputs) and `vocab_size` (token "
            f"ids). Received: input_features={input_features!r}, vocab_size={vocab_size!r}"
        )
    if input_scale is not None and vocab_size is not None:
        raise ValueError("`input_scale` standardises continuous inputs; token ids have none. "
                         f"Received: input_scale={input_scale!r} with vocab_size={vocab_size!r}")
    if output_scale is not None and num_classes is not None:
        raise ValueError("`output_scale` rescales a regression output; a classifier has none. "
                         f"Received: output_scale={output_scale!r}, num_classes={num_classes!r}")
    input_scale = _scale("input_scale", input_scale)
    output_scale = _scale("output_scale", output_scale)
    units = checks.integer("units", units)
    num_layers = checks.integer("num_layers", num_layers)
    embedding_dim = checks.integer("embedding_dim", embedding_dim)
    output_units = checks.integer("output_units", output_units)
    dropout_rate = checks.fraction("dropout_rate", dropout_rate)
    if max_lag is not None:
        max_lag = checks.integer("max_lag", max_lag, minimum=3)
    if num_classes is not None:
        num_classes = checks.integer("num_classes", num_classes, minimum=2)

    if vocab_size is not None:
        vocab_size = checks.integer("vocab_size", vocab_size)
        inputs = keras.Input(shape=(None,), dtype="int32", name=input_name or "tokens")
        x = keras.layers.Embedding(
            vocab_size, embedding_dim, mask_zero=bool(mask_padding), name="embedding"
        )(inputs)
    else:
        input_features = checks.integer("input_features", input_features)
        inputs = keras.Input(
            shape=(None, input_features), dtype="float32", name=input_name or "sequence"
        )
        x = inputs
        if mask_padding:  # An all-zero step is padding, masked before any scaling moves it.
            x = keras.layers.Masking(0.0, name="padding")(x)
        if input_scale is not None:
            mean, std = input_scale
            x = keras.layers.Normalization(mean=mean.tolist(), variance=(std ** 2).tolist(),
                                           name="standardise")(x)

    for index in range(num_layers):
        return_sequences = head == "steps" or index < num_layers - 1
        options = {"return_sequences": return_sequences, "name": f"{cell}_{index + 1}"}
        initializers = _initializers(cell, initialization, max_lag)
        if builtin is None or implementation == "essay":
            layer = keras.layers.RNN(essay_cell(units, **initializers), **options)
        else:
            if cell != "simple_rnn":
                options["use_cudnn"] = use_cudnn
            if cell == "lstm" and "bias_initializer" in initializers:
                # Keras would otherwise put ones over the forget gate's part of the bias.
                options["unit_forget_bias"] = False
            layer = builtin(units, **options, **initializers)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{cell}_{index + 1}")
        x = layer(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=f"dropout_{index + 1}")(x)

    # Under a mixed precision policy the recurrent layers compute in float16 or bfloat16; the
    # output stays float32, as Keras's mixed precision guide advises.
    in_float32 = {"dtype": "float32"} if keras.config.dtype_policy().name != "float32" else {}
    if num_classes is not None:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities",
                                     **in_float32)(x)
    elif output_scale is None:
        outputs = keras.layers.Dense(output_units, name="prediction", **in_float32)(x)
    else:
        mean, std = output_scale
        x = keras.layers.Dense(output_units, name="standardised_prediction", **in_float32)(x)
        outputs = keras.layers.Rescaling(std.tolist(), offset=mean.tolist(), name="prediction",
                                         **in_float32)(x)
    return keras.Model(inputs, outputs, name=name or cell)


def _scale(name, scale):
    """`(mean, std)` as two float32 arrays (scalars, or one value per feature), std > 0."""
    if scale is None:
        return None
    try:
        mean, std = (np.asarray(value, dtype=np.float32) for value in scale)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` is a pair `(mean, std)` of numbers or arrays of numbers. "
                         f"Received: {name}={scale!r}") from None
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError(f"`{name}` needs a finite mean and a finite std above 0. "
                         f"Received: mean={mean.tolist()}, std={std.tolist()}")
    return mean, std


def variant(name, max_lag=None):
    """The `build_model` arguments `cell`, `initialization` and `max_lag` of a variant as the
    recipes name it, one of `VARIANTS`: a cell alone ("lstm"), or a cell and an initialization
    ("lstm+chrono"). `max_lag`, the longest lag the task asks a model to bridge, goes to chrono
    initialization, and only to it."""
    checks.one_of("variant", name, VARIANTS)
    cell, _, initialization = name.partition("+")
    return {"cell": cell, "initialization": initialization or "default",
            "max_lag": max_lag if initialization == "chrono" else None}


def units_for_weights(cell, weights, **options):
    """The units at which `build_model(cell, units, **options)` has the number of weights
    closest to `weights`: how to compare cells at the same size. A bisection over built models
    (the count grows with the units)."""
    def count(units):
        return build_model(cell, units, **options).count_params()

    high = 2
    while count(high) <= weights:
        high *= 2
    below = max(1, bisect.bisect_right(range(1, high), weights, key=count))
    return min((below, below + 1), key=lambda units: abs(count(units) - weights))


def _initializers(cell, initialization, max_lag):
    """The arguments that give a cell `initialization`; the essay cells and Keras's layers take
    the same ones, and lay out their gates the same way."""
    if initialization == "zero_forget_bias":
        return {"bias_initializer": "zeros"}
    if initialization == "chrono":
        essay_cell = CELLS[cell][1]
        input_block = 0 if essay_cell.blocks == 4 else None  # Gates i, f, c, o or f, c, o.
        return {"bias_initializer": cells.ChronoBias(
            int(max_lag), essay_cell.blocks, essay_cell.forget_block, input_block)}
    if initialization == "irnn":
        return {"activation": "relu", "recurrent_initializer": "identity"}
    return {}


def servable_copy(model):
    """A copy of `model` with the same weights that never uses cuDNN and computes in float32.

    Keras chooses the kernel when a function is traced, so a model traced on a GPU carries
    `CudnnRNNV3` ops that a CPU-only server cannot run; and a model trained under a mixed
    precision policy would serve float16 or bfloat16 maths. Exports use this copy (its weights
    are float32 under every policy, so they carry over exactly).
    """

    def clone(layer):
        copy = layer.__class__.from_config(_in_float32(layer.get_config()))
        # `use_cudnn` is not part of a layer's config in Keras 3.15, so set it on the copy.
        for inner in (copy, getattr(copy, "forward_layer", None),
                      getattr(copy, "backward_layer", None)):
            if hasattr(inner, "use_cudnn"):
                inner.use_cudnn = False
        return copy

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _in_float32(config):
    """A layer's config with every mixed precision policy in it (nested layers too) replaced by
    float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(
                config.get("config", {}).get("name", "")).startswith("mixed_"):
            return "float32"
        return {key: _in_float32(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_in_float32(value) for value in config]
    return config

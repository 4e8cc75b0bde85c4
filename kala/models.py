"""Model builders: a recurrent network over sequences, from Keras's built-in layers.

`build_model` assembles input → (embedding) → recurrent layers → head. LSTM and GRU keep Keras's
defaults (tanh, sigmoid, bias, no recurrent dropout, not unrolled), which is what lets Keras pick
the fused cuDNN kernel when a GPU is visible; on a CPU the same model runs Keras's generic loop.

This module imports nothing else from kala.
"""

import keras
import numpy as np

CELLS = {
    "simple_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}
HEADS = ("sequence", "steps")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def build_model(
    cell="lstm",
    units=64,
    *,
    input_features=None,
    vocab_size=None,
    embedding_dim=32,
    mask_padding=False,
    num_layers=1,
    bidirectional=False,
    dropout_rate=0.0,
    head="sequence",
    num_classes=None,
    output_units=1,
    input_name=None,
    use_cudnn="auto",
    name=None,
):
    """Builds a recurrent Keras model.

    Args:
        cell: `"simple_rnn"`, `"lstm"` or `"gru"`.
        units: size of each recurrent layer's state.
        input_features: for continuous inputs of shape `(batch, time, input_features)`.
        vocab_size: for token ids of shape `(batch, time)`, embedded before the recurrent layers.
            Give exactly one of `input_features` and `vocab_size`.
        embedding_dim: size of the token embedding.
        mask_padding: with token ids, treat id 0 as padding: padded steps are skipped and a
            sequence-level head reads the last real step. Pad on the right.
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
        name: the model's name; defaults to `cell`.

    Returns:
        A functional `keras.Model` whose input has dynamic batch and time dimensions.

    Raises:
        ValueError: an argument is outside the values listed above.
    """
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(
            f"Unknown `cell` {cell!r}. Valid cells: {', '.join(CELLS)}."
        )
    _check_positive_int("units", units)
    _check_positive_int("num_layers", num_layers)
    if (input_features is None) == (vocab_size is None):
        raise ValueError(
            "Give exactly one of `input_features` (continuous inputs) and `vocab_size` (token "
            f"ids). Received: input_features={input_features!r}, vocab_size={vocab_size!r}"
        )
    _check_positive_int("input_features", input_features, allow_none=True)
    _check_positive_int("vocab_size", vocab_size, allow_none=True)
    _check_positive_int("embedding_dim", embedding_dim)
    if mask_padding and vocab_size is None:
        raise ValueError(
            "`mask_padding=True` needs token inputs (`vocab_size`); continuous inputs have no "
            "padding id. Received: mask_padding=True with input_features="
            f"{input_features!r}"
        )
    if isinstance(dropout_rate, bool) or not isinstance(dropout_rate, (int, float)) or not (
        0.0 <= dropout_rate < 1.0
    ):
        raise ValueError(
            f"`dropout_rate` must be a number in [0, 1). Received: dropout_rate={dropout_rate!r}"
        )
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {', '.join(HEADS)}. Received: head={head!r}")
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 2):
        raise ValueError(
            "`num_classes` must be an integer >= 2, or None for regression. "
            f"Received: num_classes={num_classes!r}"
        )
    _check_positive_int("output_units", output_units)
    if not (use_cudnn == "auto" or use_cudnn is False):
        raise ValueError(
            f"`use_cudnn` must be 'auto' or False. Received: use_cudnn={use_cudnn!r}"
        )

    # Keras wants Python integers; NumPy ones are accepted above.
    units, num_layers, embedding_dim, output_units = (
        int(units), int(num_layers), int(embedding_dim), int(output_units))
    if num_classes is not None:
        num_classes = int(num_classes)

    if vocab_size is not None:
        inputs = keras.Input(shape=(None,), dtype="int32", name=input_name or "tokens")
        x = keras.layers.Embedding(
            int(vocab_size), embedding_dim, mask_zero=bool(mask_padding), name="embedding"
        )(inputs)
    else:
        inputs = keras.Input(
            shape=(None, int(input_features)), dtype="float32", name=input_name or "sequence"
        )
        x = inputs

    for index in range(num_layers):
        return_sequences = head == "steps" or index < num_layers - 1
        options = {"return_sequences": return_sequences, "name": f"{cell}_{index + 1}"}
        if cell != "simple_rnn":
            options["use_cudnn"] = use_cudnn
        layer = CELLS[cell](units, **options)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{cell}_{index + 1}")
        x = layer(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=f"dropout_{index + 1}")(x)

    if num_classes is not None:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    else:
        outputs = keras.layers.Dense(output_units, name="prediction")(x)
    return keras.Model(inputs, outputs, name=name or cell)


def without_cudnn(model):
    """A copy of `model` that never uses cuDNN, with the same weights.

    Keras chooses the kernel when a function is traced, so a model traced on a GPU carries
    `CudnnRNNV3` ops that a CPU-only server cannot run (REFERENCE.md §2). Exports use this copy.
    """

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        # `use_cudnn` is not part of a layer's config in Keras 3.15, so set it on the copy.
        for inner in (copy, getattr(copy, "forward_layer", None), getattr(copy, "backward_layer", None)):
            if hasattr(inner, "use_cudnn"):
                inner.use_cudnn = False
        return copy

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy

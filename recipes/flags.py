"""A recipe's command line, made from its settings dataclass.

Every field becomes a flag, `--field-name VALUE`, converted to the field's type: `int`, `float`,
`str`, `bool` (a switch), `typing.Literal[...]` (one of its values), `tuple[X, ...]` (comma-
separated values of X) or a union of these (the first that takes the value). `--help` prints the
recipe's docstring, then each flag with the comment at the end of its field's line, its default
and its choices. Presets such as `--smoke` and `--full` are plain dicts of overrides, applied
before the flags given. A bad flag ends the run with one line and exit code 2.

Recipes import this module first: it quiets TensorFlow's C++ logging before TensorFlow loads,
unless `--verbose` is given. Run as a script (`flags.run(main)`), a recipe that Ctrl-C or SIGTERM
stops ends with one line and exit code 130 or 143: at once while it starts, after `finally`
blocks (an export's staging directory removed) once it runs; training stops at a checkpoint.
"""

import argparse
import contextlib
import dataclasses
import inspect
import io
import math
import os
import re
import signal
import stat
import sys
import tempfile
import textwrap
import tokenize
import types
import typing

# Exit codes: 2 for bad arguments or files (as argparse does); 128 + the signal's number for an
# interruption (130 for Ctrl-C, 143 for SIGTERM), as shells report it.
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
RECIPES = os.path.dirname(os.path.abspath(__file__))
_SCRIPT = os.path.abspath(getattr(sys.modules["__main__"], "__file__", None) or "")


def _interrupted_while_starting(signum, frame):
    """Ctrl-C or SIGTERM while TensorFlow loads: nothing is written yet, so end now."""
    os.write(_STDERR, f"{os.path.basename(sys.argv[0])}: interrupted while starting; nothing "
                      "was written\n".encode())
    os._exit(128 + signum)


if os.path.dirname(_SCRIPT) == RECIPES:  # Run as a script, not imported by the tests.
    _STDERR = os.dup(2)  # The terminal's, before kala.quiet puts a filter on descriptor 2.
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, _interrupted_while_starting)

# Quiet by default: kala holds back TensorFlow's start-up lines (kala.quiet) and this hides its
# info and warning lines. `--verbose` shows them all, in worker processes too.
if "--verbose" in sys.argv[1:]:
    os.environ["KALA_VERBOSE"] = "1"
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kala.quiet  # noqa: E402  Loads TensorFlow now, before a recipe's other imports can.
import kala.training  # noqa: E402

kala.quiet.for_this_process()
if os.path.dirname(_SCRIPT) == RECIPES:
    # Started: Ctrl-C raises KeyboardInterrupt and SIGTERM `kala.Interrupted`, which `run` ends
    # the recipe on, and which the trainer holds until the step is done.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, kala.training.raise_interrupted)
# Numbers must be above 0, but these, which count from 0, and these, which take any sign.
COUNTED_FROM_ZERO = ("seed", "first_seed", "example", "devices")
SIGNED = ("shifts",)
# Settings that name a directory: a file there is refused before any work.
DIRECTORIES = ("results", "saved_models", "checkpoint_dir", "logdir")
# Settings that name a file to read: one that cannot be read is refused before any work.
FILES = ("text",)
# The repository's results/, which the docs quote: written only on purpose (`--results results`).
COMMITTED_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "results")


def run(main):
    """Runs a recipe's `main`: an interruption that the recipe does not handle itself ends it
    with one line and exit code 128 + the signal's number."""
    try:
        main()
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        print(f"\n{os.path.basename(sys.argv[0])}: interrupted ({signal.Signals(signum).name}); "
              "nothing half-written was left", file=sys.stderr)
        sys.exit(128 + signum)


def fail(message):
    """Ends the run for a bad argument or file: one line on stderr, exit code 2."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_ARGUMENTS)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, without argparse's usage block.
        fail(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps each flag's help at spaces, and a list too long for a line after its commas, never
    inside a word (argparse would cut `lstm+chrono` in two)."""

    def _split_lines(self, text, width):
        text = self._whitespace_matcher.sub(" ", text).strip()
        # A long word's commas become places to break ("\0 "), which do not show.
        text = " ".join(re.sub(r",(?=\S)", ",\0 ", word) if len(word) > width else word
                        for word in text.split(" "))
        lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
        return [line.replace("\0 ", "").replace("\0", "") for line in lines]


def parse(settings_class, description, argv=None, **presets):
    """The settings of this run: the dataclass's defaults, then each preset whose switch was
    given (`smoke={...}` under `--smoke`), then the flags given. At most one preset."""
    comments = _comments(settings_class)
    parser = _Parser(prog=os.path.basename(sys.argv[0]), description=description,
                     formatter_class=_HelpFormatter)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines, start-up included")
    for field in dataclasses.fields(settings_class):
        flag = "--" + field.name.replace("_", "-")
        comment = comments.get(field.name, "")
        if field.type is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS,
                                help=comment)
            continue
        # A comment that says what the default means stands for it.
        details = [] if "default:" in comment else [f"default: {_shown(field.default)}"]
        choices = _choices(field.type)
        if choices:
            details.append(f"choices: {', '.join(map(str, choices))}")
        parser.add_argument(flag, type=_converter(field.name, field.type),
                            default=argparse.SUPPRESS, metavar=field.name.upper(),
                            help=f"{comment} ({'; '.join(details)})" if details else comment)
    given = vars(parser.parse_args(argv))
    given.pop("verbose")  # Read at import, above.
    chosen = [name for name in presets if given.get(name)]
    if len(chosen) > 1:
        fail(f"{' and '.join('--' + name for name in chosen)} exclude each other: choose one")
    values = dict(presets[chosen[0]]) if chosen else {}
    values.update(given)
    settings = settings_class(**values)
    if getattr(settings, "smoke", False) and _same_path(getattr(settings, "results", ""),
                                                       COMMITTED_RESULTS):
        fail(f"--smoke runs are not kept: --results {settings.results} holds the committed "
             "results; leave --results out (runs/) or name another directory")
    for name in (*DIRECTORIES, *FILES):
        if name in given and not given[name].strip():
            fail(f"--{name.replace('_', '-')} was given an empty path; name one, or leave the "
                 "flag out for its default")
    for name in DIRECTORIES:
        path = getattr(settings, name, "")
        if path:
            _check_directory(f"--{name.replace('_', '-')}", path)
    for name in FILES:
        path = getattr(settings, name, "")
        if path:
            _check_file(f"--{name.replace('_', '-')}", path)
    _check_memory(settings)
    return settings


def memory_needed(units, seq_len, batch_size, features=1):
    """About how many bytes training a one-layer recurrent model takes, at the least: float32
    weights of four gates, with their gradients and Adam's two moments, and the activations of
    one batch that backpropagation keeps (some eight vectors of `units` a step), twice over."""
    weights = 4 * units * (units + features + 1)
    activations = batch_size * seq_len * (8 * units + features)
    return 4 * (4 * weights + 2 * activations)


def available_memory():
    """The bytes this process may use: the machine's memory, or less under a cgroup's limit or
    a `ulimit -v`."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/memory.max") as file:
            limits.append(int(file.read()))  # "max" (no limit) is not an int.
    with contextlib.suppress(ImportError, ValueError):
        import resource

        for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            soft = resource.getrlimit(kind)[0]
            if soft != resource.RLIM_INFINITY:
                limits.append(soft)
    return min(limits)


def _bytes(count):
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,.0f} bytes"


def _check_memory(settings):
    """Ends the run now, before a model is built, if its sizes (`units`, `batch_size` and the
    sequence length, `seq_len` or the longest gap) would need more memory than the machine has."""
    units = getattr(settings, "units", None)
    batch_size = getattr(settings, "batch_size", None)
    lengths = [value for name in ("seq_len", "gap", "gaps", "sample_length")
               for value in _as_tuple(getattr(settings, name, ()))]
    if not (units and batch_size and lengths):
        return
    units = max(_as_tuple(units))
    needed = memory_needed(units, max(lengths), batch_size,
                           features=getattr(settings, "embedding_dim", 1))
    available = available_memory()
    if needed > available:
        fail(f"--units {units}, --batch-size {batch_size} and sequences of {max(lengths):,} steps "
             f"would need at least {_bytes(needed)} of memory to train; this machine allows "
             f"{_bytes(available)}")


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _check_file(flag, path):
    """Ends the run now unless `path` is a regular file this process can read. A FIFO or a
    device is refused before it is opened: reading one could wait forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        fail(f"{flag} {path} does not exist")
    except OSError as error:
        fail(f"{flag} {path} cannot be read ({error.strerror})")
    if stat.S_ISDIR(mode):
        fail(f"{flag} {path} is a directory, expected a file")
    if not stat.S_ISREG(mode):
        fail(f"{flag} {path} is not a regular file (a FIFO, socket or device), expected a "
             "text file")
    if not os.access(path, os.R_OK):
        fail(f"{flag} {path} cannot be read")


def _same_path(path, other):
    return bool(path) and os.path.realpath(path) == os.path.realpath(other)


def _check_directory(flag, path):
    """Ends the run now, before any work, if `path` cannot be made into a directory that takes
    files. Directories made to find out are removed again."""
    if os.path.exists(path) and not os.path.isdir(path):
        fail(f"{flag} {path} is a file, expected a directory")
    made = []
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    try:
        for directory in reversed(made):
            os.mkdir(directory)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        fail(f"{flag} {path}: cannot write there ({error.strerror or error})")
    finally:
        for directory in made:
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def _comments(settings_class):
    """The comment at the end of each field's line in the class's source, by field name."""
    source = inspect.getsource(settings_class)
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            match = re.match(r"\s*(\w+)\s*:", token.line)
            if match:
                comments[match.group(1)] = token.string.lstrip("#").strip()
    return comments


def _shown(value):
    """A default as it would be typed on the command line."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(value) if value == "" else str(value)


def _members(kind):
    """The types of a union, or the type alone."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _choices(kind):
    """The values a `Literal` type (or a tuple of one) allows; empty for other types."""
    choices = []
    for member in _members(kind):
        if typing.get_origin(member) is tuple:
            member = typing.get_args(member)[0]
        if typing.get_origin(member) is typing.Literal:
            choices.extend(typing.get_args(member))
    return tuple(choices)


def _converter(name, kind):
    """A function from the text of a flag to a value of `kind`; it raises ArgumentTypeError,
    which argparse reports with the flag's name."""
    members = _members(kind)
    if len(members) > 1:
        converters = [_converter(name, member) for member in members]

        def convert_union(text):
            errors = []
            for convert in converters:
                try:
                    return convert(text)
                except argparse.ArgumentTypeError as error:
                    errors.append(str(error))
            raise argparse.ArgumentTypeError("; or ".join(errors))

        return convert_union
    if typing.get_origin(kind) is tuple:
        convert_item = _converter(name, typing.get_args(kind)[0])

        def convert_tuple(text):
            items = [item.strip() for item in text.split(",")]
            if not all(items):
                raise argparse.ArgumentTypeError(
                    f"expected comma-separated values, none of them empty, got {text!r}")
            return tuple(convert_item(item) for item in items)

        return convert_tuple
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)

        def convert_choice(text):
            for choice in choices:
                if text == str(choice):
                    return choice
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(map(str, choices))})")

        return convert_choice
    if kind in (int, float):
        from_zero, signed = name in COUNTED_FROM_ZERO, name in SIGNED

        def convert_number(text):
            try:
                value = kind(text)
            except ValueError:
                expected = "an integer" if kind is int else "a number"
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
            if from_zero and value < 0:
                raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
            if not (from_zero or signed or value > 0):
                raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
            return value

        return convert_number
    return kind


@contextlib.contextmanager
def bad_arguments():
    """Turns a library `ValueError` raised while setting up into a one-line exit with code 2."""
    try:
        yield
    except ValueError as error:
        fail(str(error))


@contextlib.contextmanager
def missing_data():
    """Turns a dataset that cannot be built (its package not installed, its files not where the
    package should have them, a TFDS dataset that needs a download) into a one-line exit with
    code 2."""
    try:
        yield
    except (ModuleNotFoundError, FileNotFoundError) as error:
        fail(str(error))

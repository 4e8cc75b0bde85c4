"""The serving contract, checked: what TF Serving needs of a model base path, without TF Serving.

`check(base_path)` looks at every model directory under a base path (kala's `saved_models/`) and
reports, per model, what a TF Serving server pointed at it with `--model_config_file` would
trip on:

- only integer version directories (a server ignores other names, and loads any integer one as
  soon as it appears), at least one of them, and no staging directory of an export that died;
- each version complete: `saved_model.pb` and `variables/` (its index and data files);
- each version loads, has the `serving_default` signature and no cuDNN ops (which a CPU-only
  server cannot run);
- each version's warmup requests replay against it (kala writes one for every signature);
- `models.config` lists exactly the model directories, at the paths docs/serving.md's Docker command
  mounts.

From the command line: `python -m kala.serving check [DIR]` (default `saved_models/`) prints a
short report per model and exits with 1 if anything fails, 2 for a bad argument.
"""

import dataclasses
import os
import sys

from kala import export, quiet


@dataclasses.dataclass
class ModelReport:
    """What `check` found for one model directory: its versions and its problems."""

    name: str
    versions: list
    problems: list
    # The signatures of the newest version (empty if it has none that can be read).
    signatures: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


def _check_version(version_dir):
    """The problems of one version directory (empty if it serves)."""
    import tensorflow as tf

    missing = [part for part in ("saved_model.pb", os.path.join("variables", "variables.index"))
               if not os.path.exists(os.path.join(version_dir, part))]
    if missing:
        return [f"incomplete SavedModel: no {', '.join(missing)}"]
    problems = []
    found = export.cudnn_ops(version_dir)
    if found:
        problems.append(f"cuDNN ops {', '.join(found)}: a CPU-only server cannot run them")
    try:
        loaded = tf.saved_model.load(version_dir)
    except Exception as error:  # A SavedModel that TensorFlow cannot load, for any reason.
        return problems + [f"does not load: {type(error).__name__}: {str(error)[:200]}"]
    if export.SIGNATURE not in loaded.signatures:
        problems.append(f"no {export.SIGNATURE!r} signature (it has: "
                        f"{', '.join(loaded.signatures) or 'none'})")
    if not os.path.exists(os.path.join(version_dir, export.WARMUP_FILE)):
        problems.append(f"no warmup requests ({export.WARMUP_FILE})")
        return problems
    try:
        requests = export.warmup_requests(version_dir)
        for request in requests:
            export.replay(loaded, request)
    except Exception as error:  # A record that does not parse or a request the model refuses.
        problems.append(f"warmup requests do not replay: {type(error).__name__}: "
                        f"{str(error)[:200]}")
    else:
        if not requests:
            problems.append(f"the warmup file {export.WARMUP_FILE} holds no requests")
    return problems


def check_model(model_dir):
    """A `ModelReport` for one model directory."""
    name = os.path.basename(os.path.normpath(model_dir))
    problems = [f"{entry}: the staging directory of an export that died (the next export "
                "removes it)" for entry in export.stale_staging(model_dir)]
    for entry in sorted(os.listdir(model_dir)):
        if not export.is_version(entry) and not export.is_staging(entry):
            problems.append(f"{entry}: not an integer version (TF Serving ignores it)")
    numbers = export.versions(model_dir)
    if not numbers:
        problems.append("no version")
    for number in numbers:
        problems += [f"version {number}: {problem}"
                     for problem in _check_version(os.path.join(model_dir, str(number)))]
    signatures = []
    if numbers:
        try:
            signatures = export.signature_names(os.path.join(model_dir, str(numbers[-1])))
        except Exception:  # No saved_model.pb, or one that does not parse: reported above.
            pass
    return ModelReport(name, numbers, problems, signatures)


def check_config(base_path):
    """The problems of `<base_path>/models.config` against the model directories there."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = os.path.join(base_path, export.CONFIG_FILE)
    try:
        with open(path) as file:
            config = text_format.Parse(file.read(), model_server_config_pb2.ModelServerConfig())
    except FileNotFoundError:
        return [f"no {export.CONFIG_FILE}: run an export, or "
                "kala.export.write_models_config(base_path)"]
    except (OSError, text_format.ParseError) as error:
        return [f"{export.CONFIG_FILE} does not parse as a ModelServerConfig: {error}"]
    listed = {entry.name: entry.base_path for entry in config.model_config_list.config}
    expected = {name: f"{export.SERVER_BASE_PATH}/{name}"
                for name in export.model_names(base_path)}
    problems = []
    for name in sorted(set(expected) - set(listed)):
        problems.append(f"{export.CONFIG_FILE} does not list model {name!r}")
    for name in sorted(set(listed) - set(expected)):
        problems.append(f"{export.CONFIG_FILE} lists {name!r}, which has no model directory "
                        "with a version")
    for name in sorted(set(listed) & set(expected)):
        if listed[name] != expected[name]:
            problems.append(f"{export.CONFIG_FILE}: model {name!r} has base_path "
                            f"{listed[name]!r}, expected {expected[name]!r}")
    return problems


def check(base_path):
    """Checks a model base path: returns (a `ModelReport` per model directory, the problems of
    models.config).

    Raises:
        ValueError: `base_path` is not a directory.
    """
    if not os.path.isdir(base_path):
        raise ValueError(f"{base_path!r} is not a directory; expected a TF Serving model base "
                         "path such as saved_models/")
    reports = [check_model(os.path.join(base_path, name))
               for name in sorted(os.listdir(base_path))
               if os.path.isdir(os.path.join(base_path, name)) and not name.startswith(".")]
    return reports, check_config(base_path)


def main(argv=None):
    """`python -m kala.serving check [DIR]`: prints a report per model; exit 1 on a failure."""
    import argparse

    quiet.for_this_process()

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # One line and exit code 2, without the usage block.
            print(f"python -m kala.serving: error: {message}", file=sys.stderr)
            sys.exit(2)

    parser = Parser(prog="python -m kala.serving",
                    description="Checks exports against TF Serving's contract.")
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="check every model under a base path")
    checker.error = parser.error
    checker.add_argument("base_path", nargs="?", default="saved_models", metavar="DIR",
                         help="the model base path (default: saved_models)")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        reports, config_problems = check(arguments.base_path)
    except ValueError as error:
        print(f"python -m kala.serving check: error: {error}", file=sys.stderr)
        return 2
    for report in reports:
        versions = ", ".join(map(str, report.versions)) or "none"
        signatures = (f"; signatures of version {report.versions[-1]}: "
                      f"{', '.join(report.signatures)}" if report.signatures else "")
        print(f"{report.name}: {'ok' if report.ok else 'FAILED'} (versions: {versions}"
              f"{signatures})")
        for problem in report.problems:
            print(f"  - {problem}")
    print(f"{export.CONFIG_FILE}: {'ok' if not config_problems else 'FAILED'}")
    for problem in config_problems:
        print(f"  - {problem}")
    return 0 if all(report.ok for report in reports) and not config_problems else 1


if __name__ == "__main__":
    sys.exit(main())

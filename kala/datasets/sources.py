"""Where the builders' files come from: packages that ship them (the `data` extra)."""

import importlib
import importlib.util
import socket

from etils import epath

INSTALL = "pip install -e '.[data]'"


def module(name, dataset, package=None):
    """Imports module `name` for `dataset`, or raises ModuleNotFoundError saying how to
    install the package (`package`: its name on PyPI, if not the module's first part)."""
    package = package or name.split(".")[0]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{dataset} reads its data from the package {package}, which is not installed "
            f"({error}); install kala's data extra: {INSTALL} (or pip install {package})"
        ) from error


def package_file(package, path, dataset):
    """The file at `path` inside installed `package`, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{dataset} reads its data from the package {package}, which is not installed; "
            f"install kala's data extra: {INSTALL} (or pip install {package})")
    found = epath.Path(list(spec.submodule_search_locations)[0]) / path
    if not found.exists():
        raise FileNotFoundError(
            f"{dataset} expected {found} in the installed {package}, and it is not there; "
            f"this {package} may ship its data elsewhere: reinstall kala's data extra: {INSTALL}")
    return found


def reachable(host, port=443, timeout=5.0):
    """Whether a TCP connection to `host` opens within `timeout` seconds."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True

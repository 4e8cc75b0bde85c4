"""One run per directory: a lock that a second process is refused at once, told who holds it.

`hold(directory)` takes an exclusive `flock` on `directory/.kala.lock` and writes the holder's
process id there. The kernel releases the lock when the holder's process ends, however it ends,
so a lock file that a killed run left behind is simply taken over: the file stays, the lock
does not. Where the OS has no `fcntl` (Windows), or the file system no locks, nothing is
locked.

This module imports nothing from kala.
"""

import os

LOCK_FILE = ".kala.lock"


class Lock:
    """A held lock; `release()` (or the end of the process) lets the next run in."""

    def __init__(self, directory, file):
        self.directory = directory
        self._file = file

    def release(self):
        if self._file is not None:
            self._file.close()  # Closing the file releases the flock.
            self._file = None

    @property
    def held(self):
        return self._file is not None


def hold(directory, what="run"):
    """Locks `directory` (made if missing) for this process and returns the `Lock`.

    Raises:
        ValueError: another process holds it (the message names its process id), or the lock
            file cannot be made.
    """
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        import fcntl

        file = open(os.path.join(directory, LOCK_FILE), "a+")
    except ImportError:
        return Lock(directory, None)
    except OSError as error:  # A read-only directory, say.
        raise ValueError(f"{directory}: cannot lock it for this {what} ({error.strerror})"
                         ) from None
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "not yet written"
        file.close()
        raise ValueError(
            f"{directory} is in use by another {what} (process {holder}): one {what} per "
            "directory. Wait for it to end, or use another directory."
        ) from None
    except OSError:  # A file system without locks (ENOLCK): run unlocked, as on Windows.
        file.close()
        return Lock(directory, None)
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()}\n")
    file.flush()
    return Lock(directory, file)

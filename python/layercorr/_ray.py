"""What every layercorr.cluster step shares: Ray start-up and waiting, atomic
writes, the extension on a worker, the test-only fault hook, progress."""
from __future__ import annotations

import atexit
import glob as _glob
import os
import sys
import time
import uuid

import layercorr

TMP_PREFIX = ".tmp-"
RAYON_ENV = "RAYON_NUM_THREADS"


def q(s) -> str:
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def is_url(p: str) -> bool:
    return "://" in p


def absolute(p: str) -> str:
    return p if is_url(p) else os.path.abspath(p)


def crash_once(marker) -> None:
    """Fault injection, FOR TESTS ONLY: the first task to get here kills its own worker.

    `marker` is a file path (the private `_crash_marker=` argument of extract
    and matrices) or None (always, outside the fault tests). The first task
    that creates the marker (O_EXCL, so exactly one wins across processes and
    nodes sharing the folder) ends its worker process with os._exit(1), as a
    crash or an OOM kill would, after writing its temporary file and before
    renaming it into place. Ray sees the worker die and retries the task
    (max_retries); the retry finds the marker and runs normally.
    """
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os._exit(1)


def tmp_name(dest: str) -> str:
    """A temporary name next to dest: starts with a dot, never matches shard-*/layer-*/block-*."""
    return os.path.join(os.path.dirname(dest),
                        f"{TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(dest)}")


def atomic_write(write, dest: str, crash_marker=None) -> None:
    """write(tmp) then os.replace(tmp, dest); tmp removed on any error."""
    tmp = tmp_name(dest)
    try:
        write(tmp)
        crash_once(crash_marker)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_copy(con, query: str, dest: str, params=None, crash_marker=None) -> None:
    """COPY (query) to a temporary file next to dest, then os.replace it into place.

    A file left by a killed worker is never read as a finished one.
    """
    atomic_write(lambda tmp: con.execute(f"COPY ({query}) TO {q(tmp)} (FORMAT parquet)", params),
                 dest, crash_marker)


def remove_stale(folder: str) -> None:
    """Removes .tmp-* files under folder (left by a killed worker or driver: never complete)."""
    for stale in _glob.glob(os.path.join(folder, "**", TMP_PREFIX + "*"), recursive=True):
        os.remove(stale)


def choose_layers(present, layers, where) -> list[str]:
    """The layers asked for (a name, a list, or None for all `present`), in
    that order; a layer not in `present` is an error naming `where`."""
    order = list(present) if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    missing = [x for x in order if x not in present]
    if missing:
        raise ValueError(f"layer {missing[0]} is not in {where} "
                         f"(layers there: {', '.join(present)})")
    return order


def worker_extension(driver_ext: str) -> str:
    """The extension a task loads.

    $LAYERCORR_EXTENSION in the worker's environment (set on the nodes, or
    by the `runtime_env` env_vars of the call) wins; otherwise the path the
    driver resolved, which must then exist on the worker too (a shared path).
    """
    if os.environ.get(layercorr.ENV_VAR):
        return layercorr.extension_path()
    if not os.path.isfile(driver_ext):
        raise FileNotFoundError(
            f"layercorr extension not found on node {node_id()}: {driver_ext} (the driver's path) "
            f"does not exist here; put it on a shared path or set ${layercorr.ENV_VAR} through "
            f"runtime_env={{'env_vars': {{'{layercorr.ENV_VAR}': ...}}}}")
    return driver_ext


# One DuckDB database per worker process, with the extension loaded: Ray reuses
# its worker processes across tasks, so the first task pays for LOAD (and the
# extension's per-database caches, e.g. an opened model) and later ones do not.
_worker_db = {"key": None, "db": None}


def _close_worker_db() -> None:
    if _worker_db["db"] is not None:
        _worker_db["db"].close()
        _worker_db.update(key=None, db=None)


def connect_worker(driver_ext: str):
    """A fresh connection (cursor) to this worker process's cached database.

    The cursor has its own temporary tables and variables, so a task sees
    nothing another task created; closing it leaves the database open for the
    next task. A different extension path or thread count opens a new
    database. A killed worker takes its database with it: a retried task
    starts from a new one.
    """
    key = (worker_extension(driver_ext), task_threads())
    if _worker_db["key"] != key:
        # The extension's own parallel kernels (forward passes, matrix
        # products) run on one rayon pool per process, by default as wide as
        # the machine; a task holding k CPUs gets k threads, or k tasks on a
        # node would each use all its cores. Read once, when the pool starts
        # (the first task of this process); a value set for the node or in
        # runtime_env wins.
        os.environ.setdefault(RAYON_ENV, str(key[1]))
        _close_worker_db()
        _worker_db.update(key=key, db=layercorr.connect(extension=key[0], threads=key[1]))
        if not _worker_db.get("atexit"):
            atexit.register(_close_worker_db)
            _worker_db["atexit"] = True
    return _worker_db["db"].cursor()


def no_null_activations(con, files) -> bool:
    """True when the Parquet footers prove that no `activation` is NULL.

    DuckDB's writer counts a NULL list (and an empty one) in the null count
    of the list's element column, so a total of 0 over every row group of
    files written by DuckDB means every activation is a non-empty list. Any
    other writer, or missing statistics, gives False (then the caller reads
    the column). Reads only the footers.
    """
    con.execute("SET VARIABLE lc_meta_files = ?::VARCHAR[]", [list(files)])
    writers = con.execute("SELECT bool_and(coalesce(created_by, '') LIKE 'DuckDB%') "
                          "FROM parquet_file_metadata(getvariable('lc_meta_files'))").fetchone()[0]
    if not writers:
        return False
    nulls, chunks, missing = con.execute(
        "SELECT sum(stats_null_count), count(*), count(*) FILTER (WHERE stats_null_count IS NULL) "
        "FROM parquet_metadata(getvariable('lc_meta_files')) "
        "WHERE path_in_schema = 'activation, list, element'").fetchone()
    return bool(chunks) and not missing and nulls == 0


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def task_threads() -> int:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(round(cpus)))


def init(address):
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    return ray


def remote(ray, fn, runtime_env=None, **options):
    """fn as a Ray task: retried 3 times when its worker dies, spread over nodes."""
    opts = dict(max_retries=3, scheduling_strategy="SPREAD", **options)
    if runtime_env:
        opts["runtime_env"] = runtime_env
    return ray.remote(**opts)(fn)


def cpus(ray) -> int:
    try:
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    except Exception:  # noqa: BLE001 - a cluster that cannot say: assume one
        return 1


class Progress:
    """A per-step progress bar: `step [#####.....] k/n label` on stderr.

    On a terminal the bar redraws in place; elsewhere one line per finished
    task. `callback(message)` (the API's `progress=`) receives the same
    message instead when given.
    """

    def __init__(self, step: str, total: int, callback=None, stream=None):
        self.step, self.total, self.done = step, total, 0
        self.callback = callback
        self.stream = stream
        self.t0 = time.perf_counter()

    def advance(self, label: str = "") -> None:
        self.done += 1
        width = 24
        fill = width * self.done // max(self.total, 1)
        took = time.perf_counter() - self.t0
        msg = (f"{self.step} [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
               f"{took:.1f}s {label}").rstrip()
        if self.callback:
            self.callback(msg)
        elif self.stream is not None:
            tty = getattr(self.stream, "isatty", lambda: False)()
            end = "\n" if (not tty or self.done == self.total) else ""
            self.stream.write(("\r" if tty else "") + msg + end)
            self.stream.flush()


def wait_all(ray, refs, progress, what, labels=None):
    """ray.get every ref as it finishes, advancing a Progress per task.

    The results come back in the order of `refs`, whatever order the tasks
    finished in: the callers add up floating-point sums over them, which
    must not depend on which worker was faster.

    A task that raised makes the driver raise the task's own exception
    (after cancelling the others and waiting for them to end, so that no
    temporary file is being written when it returns), so that bad input is
    a plain error here.
    """
    if isinstance(progress, Progress):
        bar = progress
    elif progress is True:
        bar = Progress(what, len(refs), None, sys.stderr)
    else:
        bar = Progress(what, len(refs), progress)
    position = {ref: i for i, ref in enumerate(refs)}
    results = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            r = ray.get(done[0])
        except ray.exceptions.RayTaskError as e:
            for p in pending:
                ray.cancel(p, force=False)
            if pending:  # let them end (and remove their temporary files) first
                ray.wait(pending, num_returns=len(pending), timeout=60)
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        results[position[done[0]]] = r
        bar.advance(r.get("label", "") if isinstance(r, dict) else "")
    return results


def dataset_files(where: str, prefix: str) -> list[str]:
    """A folder (its prefix-*.parquet files), a glob, or one file."""
    if os.path.isdir(where):
        files = sorted(_glob.glob(os.path.join(where, f"{prefix}-*.parquet")))
        if not files:
            raise FileNotFoundError(f"no {prefix}-*.parquet files in {where}")
        return [os.path.abspath(f) for f in files]
    files = sorted(_glob.glob(where))
    if not files:
        raise FileNotFoundError(f"no files match {where}")
    return [os.path.abspath(f) for f in files]


def stderr_progress(step: str, total: int):
    return Progress(step, total, None, sys.stderr)

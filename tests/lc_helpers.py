"""Shared helpers for layercorr's Python tests: paths, hosts, references.

Nothing here knows the extension's internals: the references (preprocessing,
onnxruntime with intermediate outputs) are written from the design's contract
only.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
EXTENSION = REPO / "build" / "release" / "layercorr.duckdb_extension"
CLI = REPO / ".venv" / "bin" / "duckdb"  # repo-relative shell from the pinned venv
DATA = REPO / "data"
MODEL = DATA / "models" / "efficientnet_lite0.onnx"
INCEPTION = DATA / "models" / "light_inception_v1.onnx"
LABELS = DATA / "labels" / "imagenet_labels.csv"
PHOTOS = DATA / "photos" / "classification"

sys.path.insert(0, str(TESTS))
from sqllogic import crashed_returncode, describe_returncode  # noqa: E402


def sql_str(p) -> str:
    """A path or text as the body of a SQL string literal."""
    return str(p).replace("'", "''")


def photo_paths() -> list[Path]:
    return sorted(PHOTOS.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))


# --------------------------------------------------------------------------
# hosts


@dataclasses.dataclass
class CliResult:
    stdout: str
    stderr: str
    returncode: int

    @property
    def crashed(self) -> bool:
        return crashed_returncode(self.returncode)

    def check_alive(self):
        assert not self.crashed, (f"the DuckDB shell crashed: {describe_returncode(self.returncode)}"
                                  f"\nstderr:\n{self.stderr[-3000:]}")


def run_cli(sql: str, load: bool = True, json_mode: bool = True, timeout: int = 600,
            extension: Path = EXTENSION) -> CliResult:
    """Run SQL on stdin through `.venv/bin/duckdb -unsigned` (one process)."""
    script = (f"LOAD '{sql_str(extension)}';\n" if load else "") + sql
    cmd = [str(CLI), "-unsigned"] + (["-json"] if json_mode else [])
    p = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=timeout,
                       cwd=REPO)
    return CliResult(p.stdout, p.stderr, p.returncode)


_PY_CHILD = r"""
import json, sys
import duckdb
ext, load, statements = json.load(sys.stdin)
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
if load:
    con.execute("LOAD '" + ext.replace("'", "''") + "'")
for s in statements:
    try:
        rows = con.execute(s).fetchall()
        rec = {"ok": True, "rows": [list(r) for r in rows]}
    except duckdb.Error as e:
        rec = {"ok": False, "type": type(e).__name__,
               "is_duckdb_error": isinstance(e, duckdb.Error), "message": str(e)}
    print(json.dumps(rec, default=str), flush=True)
"""


@dataclasses.dataclass
class PySession:
    results: list
    returncode: int
    stderr: str

    @property
    def crashed(self) -> bool:
        return crashed_returncode(self.returncode)


def run_python_child(statements: list[str], load: bool = True, timeout: int = 600,
                     extension: Path = EXTENSION) -> PySession:
    """Run statements on ONE connection of the Python duckdb package in a child
    process, so that a host crash fails the test instead of killing pytest."""
    p = subprocess.run([sys.executable, "-c", _PY_CHILD],
                       input=json.dumps([str(extension), load, statements]),
                       capture_output=True, text=True, timeout=timeout, cwd=REPO)
    results = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return PySession(results, p.returncode, p.stderr)


# --------------------------------------------------------------------------
# references


@lru_cache(maxsize=4)
def model_metadata(model_path: str) -> dict:
    import onnx
    m = onnx.load(model_path, load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def reference_input(path, model_path=MODEL) -> np.ndarray:
    """Independent preprocessing: [3, S, S] float32 from an image file.

    Shorter side resized to S with Pillow BILINEAR (new size rounded), centre
    crop with left = (w' - S) // 2, RGB, (x - mean) / std, CHW. S, mean and
    std come from the model's metadata_props.
    """
    from PIL import Image
    meta = model_metadata(str(model_path))
    size = int(meta["layercorr.input_size"])
    mean = np.array([float(x) for x in meta["layercorr.mean"].split(",")], np.float32)
    std = np.array([float(x) for x in meta["layercorr.std"].split(",")], np.float32)
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        nw, nh = round(w * size / s), round(h * size / s)
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        x = np.asarray(im, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@lru_cache(maxsize=2)
def ort_session(model_path: str, all_outputs: bool):
    """onnxruntime session; with all_outputs every node output is a graph output."""
    import onnx
    import onnxruntime as ort
    m = onnx.load(model_path)
    if all_outputs:
        m = onnx.shape_inference.infer_shapes(m)
        have = {o.name for o in m.graph.output}
        vi = {v.name: v for v in m.graph.value_info}
        for node in m.graph.node:
            for name in node.output:
                if name and name not in have:
                    m.graph.output.append(vi.get(name) or onnx.helper.make_tensor_value_info(
                        name, onnx.TensorProto.FLOAT, None))
                    have.add(name)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_run(x: np.ndarray, names=None, model_path=MODEL) -> dict:
    """Run onnxruntime on a [N,3,S,S] batch; returns name -> array."""
    sess = ort_session(str(model_path), names is not None)
    inp = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()] if names is None else list(names)
    vals = sess.run(outs, {inp: np.ascontiguousarray(x, dtype=np.float32)})
    return dict(zip(outs, vals))


def graph_tensors(model_path=MODEL) -> list[tuple[str, str]]:
    """(tensor name, producing op type) for every node output, in graph order."""
    import onnx
    m = onnx.load(str(model_path), load_external_data=False)
    return [(o, n.op_type) for n in m.graph.node for o in n.output if o]


# --------------------------------------------------------------------------
# measured child hosts (issue 13: hostile input, sandbox, limits)
#
# Each run is one child process in its own session, waited for with wait4 so
# that its peak RSS (including the duckdb-cli wrapper's own child, the shell)
# is known, and killed as a group when it overruns its timeout (a hang is a
# failed test, not a stuck test run).


@dataclasses.dataclass
class MeasuredRun:
    stdout: str
    stderr: str
    returncode: int | None
    maxrss_mb: float
    elapsed: float
    timed_out: bool

    @property
    def crashed(self) -> bool:
        return crashed_returncode(self.returncode)

    def describe(self) -> str:
        if self.timed_out:
            state = f"timed out after {self.elapsed:.1f} s (killed)"
        elif self.crashed:
            state = f"crashed: {describe_returncode(self.returncode)}"
        else:
            state = f"exit code {self.returncode}"
        return (f"child {state}; peak RSS {self.maxrss_mb:.0f} MB; {self.elapsed:.1f} s\n"
                f"stderr tail:\n{self.stderr[-2000:]}")


RSS_CAP_MB = 4096  # a child past this is killed: a runaway must not take the machine down


def _tree_sum_mb(pid: int, measure) -> float:
    """Sum of `measure(process)` in bytes over the process tree of `pid`."""
    import psutil
    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += measure(q)
        except (psutil.Error, OSError, ValueError):
            pass
    return total / 2**20


def _rss(process) -> int:
    return process.memory_info().rss


def _peak_rss(process) -> int:
    """VmHWM: the process's own peak RSS since its exec. Unlike wait4's
    ru_maxrss, which Linux carries over from the parent's memory at fork (a
    large pytest process would make every child look large), this is the
    child's own peak."""
    with open(f"/proc/{process.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree_rss_mb(pid: int) -> float:
    return _tree_sum_mb(pid, _rss)


def _tree_peak_mb(pid: int) -> float:
    return _tree_sum_mb(pid, _peak_rss)


def run_measured(cmd: list, stdin_text: str = "", timeout: float = 120,
                 merge_stderr: bool = False, env: dict | None = None,
                 rss_cap_mb: float = RSS_CAP_MB) -> MeasuredRun:
    """Run cmd to completion (or kill its process group after `timeout` s, or
    when its process tree's RSS passes rss_cap_mb) and return its output,
    return code and peak RSS in MB: the largest sum of the tree's VmHWM seen
    while polling every 20 ms (see _tree_peak_mb)."""
    import os
    import signal
    import tempfile
    import time
    with tempfile.TemporaryFile("w+") as fin, tempfile.TemporaryFile("w+") as fout, \
            tempfile.TemporaryFile("w+") as ferr:
        fin.write(stdin_text)
        fin.flush()
        fin.seek(0)
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=fin, stdout=fout,
                             stderr=fout if merge_stderr else ferr, cwd=REPO,
                             start_new_session=True, env=env)
        timed_out = False
        capped = 0.0
        polls = 0
        peak = 0.0
        while True:
            peak = max(peak, _tree_peak_mb(p.pid))
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            polls += 1
            if polls % 5 == 0:
                rss = _tree_rss_mb(p.pid)
                if rss > rss_cap_mb:
                    capped = rss
            if capped or time.monotonic() - t0 > timeout:
                timed_out = not capped
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if not timed_out:
            # the shell may have left descendants in its session: none expected
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        fout.seek(0)
        ferr.seek(0)
        err = ferr.read()
        if capped:
            err += (f"\n[test harness] killed the child: its RSS reached {capped:.0f} MB "
                    f"(cap {rss_cap_mb:.0f} MB)\n")
        return MeasuredRun(fout.read(), err, p.returncode, max(peak, capped),
                           elapsed, timed_out)


_PY_CHILD_EX = r"""
import json, sys, time
import duckdb
spec = json.load(sys.stdin)
config = {"allow_unsigned_extensions": "true"}
config.update(spec["config"] or {})
con = duckdb.connect(config=config)
con.execute("SET enable_progress_bar = false")  # it would print on our stdout
if spec["load"]:
    con.execute("LOAD '" + spec["ext"].replace("'", "''") + "'")
if spec["setup"]:
    exec(spec["setup"], {"con": con, "duckdb": duckdb})
print(json.dumps({"ready": True}), flush=True)
for s in spec["statements"]:
    t0 = time.monotonic()
    try:
        rows = con.execute(s).fetchall()
        rec = {"ok": True, "rows": [list(r) for r in rows]}
    except duckdb.Error as e:
        rec = {"ok": False, "type": type(e).__name__,
               "is_duckdb_error": isinstance(e, duckdb.Error), "message": str(e)}
    except Exception as e:  # not a duckdb error: reported as such, the test fails on it
        rec = {"ok": False, "type": type(e).__name__, "is_duckdb_error": False,
               "message": repr(e)}
    rec["elapsed"] = time.monotonic() - t0
    print(json.dumps(rec, default=str), flush=True)
"""


@dataclasses.dataclass
class ChildSession:
    """Statements' outcomes in one host process, with how that process ended.

    results[i] is {"ok": True, "rows": [...]} or {"ok": False, "message": ...,
    "is_duckdb_error": bool}, plus "elapsed" (seconds); a statement the host
    never answered (crash, hang) has no entry."""
    results: list
    run: MeasuredRun
    host: str

    @property
    def crashed(self) -> bool:
        return self.run.crashed

    def check_alive(self, n: int | None = None, max_rss_mb: float | None = None):
        """The host neither crashed nor hung, answered n statements, and its
        peak RSS stayed under max_rss_mb."""
        assert not self.run.timed_out, f"{self.host} host hung: " + self.run.describe()
        assert not self.run.crashed, f"{self.host} host crashed: " + self.run.describe()
        if n is not None:
            assert len(self.results) == n, (f"{self.host} host answered {len(self.results)} of {n} "
                                             f"statements: " + self.run.describe()
                                             + f"\nresults: {str(self.results)[-2000:]}")
        if max_rss_mb is not None:
            assert self.run.maxrss_mb < max_rss_mb, (
                f"{self.host} host's peak RSS {self.run.maxrss_mb:.0f} MB >= {max_rss_mb:.0f} MB")


def run_py_measured(statements: list, config: dict | None = None, setup: str | None = None,
                    load: bool = True, timeout: float = 120,
                    extension: Path = EXTENSION) -> ChildSession:
    """Run statements on ONE Python duckdb connection in a child process.

    config goes to duckdb.connect (e.g. {"memory_limit": "1GB"}, set before
    LOAD); setup is Python run after LOAD with `con` bound (e.g. to register
    an fsspec file system)."""
    spec = {"ext": str(extension), "load": load, "config": config, "setup": setup,
            "statements": list(statements)}
    r = run_measured([sys.executable, "-c", _PY_CHILD_EX], json.dumps(spec), timeout=timeout)
    lines = []
    for line in r.stdout.splitlines():
        k = min((i for i in (line.find('{"ok"'), line.find('{"ready"')) if i >= 0), default=-1)
        if k >= 0:  # anything before it (a progress bar) is not ours
            lines.append(json.loads(line[k:]))
    results = [x for x in lines if "ready" not in x]
    return ChildSession(results, r, "python")


_CLI_MARK = "__lc_mark_"


def run_cli_measured(statements: list, load: bool = True, timeout: float = 120,
                     extension: Path = EXTENSION) -> ChildSession:
    """Run statements in ONE `.venv/bin/duckdb -unsigned -json` process, a marker
    query after each so that every statement's output or error is cut out of
    the shell's combined stdout/stderr; results like run_py_measured's (rows
    as lists of column values)."""
    import re
    import uuid
    token = uuid.uuid4().hex[:8]
    mark = lambda k: f"{_CLI_MARK}{token}_{k}"  # noqa: E731
    script = [f"SELECT '{mark('start')}' AS __lc;"]
    if load:
        script += [f"LOAD '{sql_str(extension)}';", f"SELECT '{mark('load')}' AS __lc;"]
    for k, s in enumerate(statements):
        s = s.rstrip()
        script.append(s if s.endswith(";") else s + ";")
        script.append(f"SELECT '{mark(k)}' AS __lc;")
    r = run_measured([str(CLI), "-unsigned", "-json"], "\n".join(script) + "\n",
                     timeout=timeout, merge_stderr=True)
    pat = re.compile(r'^\[\{"__lc":"' + re.escape(_CLI_MARK + token) + r'_(\w+)"\}\]\s*$',
                     re.MULTILINE)
    ms = list(pat.finditer(r.stdout))
    chunks = {m.group(1): r.stdout[ms[a - 1].end():m.start()] for a, m in enumerate(ms) if a > 0}
    results = []
    for k in range(len(statements)):
        if str(k) not in chunks:
            break
        text = chunks[str(k)].strip()
        err = re.search(r"^[A-Z][A-Za-z ]*Error: ", text, re.MULTILINE)
        if err:
            results.append({"ok": False, "is_duckdb_error": True, "message": text[err.start():]})
            continue
        try:  # one JSON array per result, over several lines when it has several rows
            rows = [list(d.values()) for d in json.loads(text)] if text else []
            results.append({"ok": True, "rows": rows})
        except json.JSONDecodeError:
            results.append({"ok": False, "is_duckdb_error": False,
                            "message": "unparsed shell output: " + text[:2000]})
    if load and chunks.get("load", "").strip():
        r.stderr = "LOAD failed: " + chunks["load"].strip() + "\n" + r.stderr
    return ChildSession(results, r, "cli")


def run_host(host: str, statements: list, **kw) -> ChildSession:
    """run_py_measured or run_cli_measured by host name ('python' | 'cli')."""
    if host == "python":
        return run_py_measured(statements, **kw)
    if host == "cli":
        return run_cli_measured(statements, **kw)
    raise ValueError(host)


def stamp_model(src, dst, **props) -> Path:
    """Copy an ONNX model with layercorr.<key> metadata set (None deletes a key)."""
    import onnx
    m = onnx.load(str(src))
    keep = {p.key: p.value for p in m.metadata_props}
    for k, v in props.items():
        key = k if k.startswith("layercorr.") else "layercorr." + k
        if v is None:
            keep.pop(key, None)
        else:
            keep[key] = str(v)
    del m.metadata_props[:]
    for k, v in keep.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, str(dst))
    return Path(dst)

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

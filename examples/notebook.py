"""The layer-wise decorrelation analysis from Python, as in a notebook.

Runs the demo model over the photos with the extension, builds the
per-layer matrices and the layer x layer similarity in SQL, and pulls the
results into numpy without per-element Python loops. Run after `make demo`:

    .venv/bin/python examples/notebook.py
"""

from pathlib import Path

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "data/models/efficientnet_lite0.onnx"
PHOTOS = ROOT / "data/photos/classification/*.jpg"


def main() -> None:
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ROOT / 'build/release/layercorr.duckdb_extension'}'")

    # Activations as rows (path, layer, activation), streamed by the table form.
    con.execute(
        f"""CREATE TABLE acts AS FROM nn_activations('{MODEL}', '{PHOTOS}',
                layers := ['input', 'stem', 'blocks.4', 'blocks.10', 'blocks.15', 'pool', 'logits'])"""
    )
    # One layer's activations as an N x D numpy array: unnest to a flat
    # column, fetch it as one array, reshape.
    flat = con.execute(
        "SELECT unnest(activation) AS v FROM (SELECT activation FROM acts WHERE layer = 'pool' ORDER BY path)"
    ).fetchnumpy()["v"]
    pool = flat.reshape(-1, 1280)
    print("pool activations:", pool.shape, pool.dtype)

    # Per-layer matrices in SQL; each matrix into numpy the same way.
    con.execute("CREATE TABLE matrices AS SELECT layer, layer_corr(path, activation) AS m FROM acts GROUP BY layer")
    n = con.execute("SELECT len(m.keys) FROM matrices LIMIT 1").fetchone()[0]
    r = (
        con.execute("SELECT unnest(flatten(m.matrix)) AS v FROM matrices WHERE layer = 'logits'")
        .fetchnumpy()["v"]
        .reshape(n, n)
    )
    print("logits matrix:", r.shape, "mean off-diagonal r =", float((r.sum() - n) / (n * n - n)))
    assert np.allclose(r, np.corrcoef(con.execute(
        "SELECT unnest(activation) AS v FROM (SELECT activation FROM acts WHERE layer = 'logits' ORDER BY path)"
    ).fetchnumpy()["v"].reshape(n, -1)), atol=1e-5)

    # Layer x layer similarity, ordered by depth.
    layers, sim = con.execute(
        f"""SELECT s.layers, s.matrix FROM (
                SELECT layer_similarity(layer, m ORDER BY position) AS s
                FROM matrices JOIN nn_layers('{MODEL}') USING (layer))"""
    ).fetchone()
    sim = np.array(sim)
    for name, row in zip(layers, sim):
        print(f"{name:>10}", " ".join(f"{v:5.2f}" for v in row))

    png = con.execute("SELECT similarity_heatmap(layer_similarity(layer, m)) FROM matrices").fetchone()[0]
    out = ROOT / "out/notebook_similarity.png"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(png)
    print("wrote", out)


if __name__ == "__main__":
    main()

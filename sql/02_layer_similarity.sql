-- How alike are the layers' similarity structures? The L x L matrix of the
-- main layers (input, stem, every block output, head, pool, logits) with
-- Pearson on the correlation matrices and linear CKA on centred Gram
-- matrices, side by side; then the curve of similarity to the input and to
-- the logits against depth — where the input's structure is lost.
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/02_layer_similarity.sql
LOAD 'build/release/layercorr.duckdb_extension';

SET VARIABLE photo_paths = (SELECT list(path ORDER BY path) FROM images);
CREATE OR REPLACE TABLE main_activations AS
FROM nn_activations('data/models/efficientnet_lite0.onnx', getvariable('photo_paths'),
     layers := ['input', 'stem', 'blocks.[0-9]', 'blocks.1[0-9]', 'head', 'pool', 'logits']);

CREATE OR REPLACE TABLE main_matrices AS
SELECT layer, layer_corr(path, activation) AS r, layer_corr(path, activation, 'gram') AS k
FROM main_activations GROUP BY layer;

CREATE OR REPLACE TABLE main_similarity AS
SELECT layer_similarity(layer, r ORDER BY position) AS pearson,
       layer_similarity(layer, k, 'cka' ORDER BY position) AS cka
FROM main_matrices JOIN layers USING (layer);

SELECT write_png('out/similarity_pearson.png', similarity_heatmap(pearson, 'Layer x layer: Pearson of image x image correlations')) AS figure,
       write_png('out/similarity_cka.png', similarity_heatmap(cka, 'Layer x layer: linear CKA')) AS figure2
FROM main_similarity;

-- Similarity of every layer to the input and to the logits, by depth.
CREATE OR REPLACE TABLE similarity_curve AS
SELECT l.position, s.layer, s.reference, s.method, s.value
FROM (
    SELECT b.layer, a.layer AS reference, 'pearson' AS method, rsa(a.r, b.r) AS value
    FROM main_matrices a, main_matrices b WHERE a.layer IN ('input', 'logits')
    UNION ALL
    SELECT b.layer, a.layer, 'cka', rsa(a.k, b.k, 'cka')
    FROM main_matrices a, main_matrices b WHERE a.layer IN ('input', 'logits')
) s JOIN layers l USING (layer);

SELECT layer, round(max(value) FILTER (reference = 'input' AND method = 'pearson'), 3) AS to_input,
       round(max(value) FILTER (reference = 'logits' AND method = 'pearson'), 3) AS to_logits,
       round(max(value) FILTER (reference = 'input' AND method = 'cka'), 3) AS cka_to_input,
       round(max(value) FILTER (reference = 'logits' AND method = 'cka'), 3) AS cka_to_logits
FROM similarity_curve GROUP BY layer, position ORDER BY position;

SELECT write_png('out/similarity_curve.png',
       line_plot(method || ' to ' || reference, layer, value, 'Similarity to the input and to the logits, by depth' ORDER BY position)) AS figure
FROM similarity_curve;

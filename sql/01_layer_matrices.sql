-- Per-layer image x image correlation matrices, from the pixels to the
-- logits, drawn twice: ordered by clustering of the input layer, and by
-- clustering of the output layer (logits). Block structure that appears
-- only in late layers under the output order is the network grouping
-- images by class; under the input order early layers look structured.
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/01_layer_matrices.sql
LOAD 'build/release/layercorr.duckdb_extension';

CREATE OR REPLACE TEMP TABLE shown AS
SELECT m.layer, l.position, m.m
FROM matrices m JOIN layers l USING (layer)
WHERE m.layer IN ('input', 'stem', 'blocks.2', 'blocks.6', 'blocks.10', 'blocks.15', 'head', 'pool', 'logits');

CREATE OR REPLACE TEMP TABLE orders AS
SELECT layer, corr_order(m) AS keys FROM matrices WHERE layer IN ('input', 'logits');

SELECT write_png('out/matrices_by_input_order.png',
       corr_heatmap_grid(layer, m, (SELECT keys FROM orders WHERE layer = 'input'),
                         'Image x image Pearson r per layer, ordered by input clustering' ORDER BY position)) AS figure
FROM shown;

SELECT write_png('out/matrices_by_output_order.png',
       corr_heatmap_grid(layer, m, (SELECT keys FROM orders WHERE layer = 'logits'),
                         'Image x image Pearson r per layer, ordered by logits clustering' ORDER BY position)) AS figure
FROM shown;

SELECT write_png('out/logits_matrix.png',
       corr_heatmap(m, (SELECT keys FROM orders WHERE layer = 'logits'), 'logits, ordered by logits clustering')) AS figure
FROM matrices WHERE layer = 'logits';

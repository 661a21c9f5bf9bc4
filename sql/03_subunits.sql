-- Sub-units of blocks: inside an inverted-residual block the expansion
-- (1x1 conv), depthwise (kxk conv) and projection (1x1 conv) outputs play
-- the role of an inception module's parallel branches. How alike are they
-- to each other and to the block's output? Then the same on an
-- inception-structured model (the `onnx` wheel's light_inception_v1, which
-- has GoogLeNet's structure with constant weights: its numbers show the
-- mechanics, not a trained network).
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/03_subunits.sql
LOAD 'build/release/layercorr.duckdb_extension';

SET VARIABLE photo_paths = (SELECT list(path ORDER BY path) FROM images);
CREATE OR REPLACE TABLE subunit_activations AS
FROM nn_activations('data/models/efficientnet_lite0.onnx', getvariable('photo_paths'),
     layers := ['blocks.2.*', 'blocks.2', 'blocks.6.*', 'blocks.6', 'blocks.13.*', 'blocks.13']);

CREATE OR REPLACE TABLE subunit_matrices AS
SELECT regexp_extract(layer, '^blocks\.(\d+)', 1)::INTEGER AS block, layer, layer_corr(path, activation) AS m
FROM subunit_activations WHERE layer NOT LIKE '%.conv' GROUP BY layer;

-- Each sub-unit compared with its own block's output.
SELECT s.block, s.layer, round(rsa(s.m, o.m), 3) AS similarity_to_block_output
FROM subunit_matrices s JOIN subunit_matrices o ON o.layer = 'blocks.' || s.block
ORDER BY s.block, s.layer;

SELECT write_png('out/subunits_similarity.png',
       similarity_heatmap(layer_similarity(layer, m ORDER BY position), 'EfficientNet-Lite0 block sub-units (expand / depthwise / project / output)')) AS figure
FROM subunit_matrices JOIN layers USING (layer);

-- Inception-structured model: the four branches of the first inception
-- module (1x1, 3x3, 5x5, pool projection after their ReLUs) and its
-- concatenated output. Tensor names in that file are generic (r11 ...);
-- nn_layers lists them with their ops and shapes.
CREATE OR REPLACE TABLE inception_layers AS
SELECT * FROM nn_layers('data/models/light_inception_v1.onnx');

CREATE OR REPLACE TABLE inception_matrices AS
SELECT CASE layer WHEN 'r11' THEN '3a/1x1' WHEN 'r15' THEN '3a/3x3' WHEN 'r19' THEN '3a/5x5'
                  WHEN 'r22' THEN '3a/pool_proj' WHEN 'r23' THEN '3a/output' END AS branch,
       layer, layer_corr(path, activation, 'cosine') AS m
FROM nn_activations('data/models/light_inception_v1.onnx', getvariable('photo_paths')[:20],
                    layers := ['r11', 'r15', 'r19', 'r22', 'r23'])
GROUP BY layer;

SELECT i.branch, l.op, l.shape, round(rsa(i.m, o.m, 'cka'), 3) AS cka_to_module_output
FROM inception_matrices i JOIN inception_matrices o ON o.layer = 'r23'
JOIN inception_layers l ON l.layer = i.layer
ORDER BY l.position;

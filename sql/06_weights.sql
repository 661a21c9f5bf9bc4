-- Weight statistics per layer from nn_weights(model): spread, range and
-- fraction near zero of every convolution and fully connected weight, in
-- network order, for Lite0 (and the other checkpoints when present).
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/06_weights.sql
LOAD 'build/release/layercorr.duckdb_extension';

CREATE OR REPLACE TABLE weight_stats AS
SELECT w.*, l.position
FROM nn_weights('data/models/efficientnet_lite0.onnx') w
JOIN layers l ON l.layer = w.layer
WHERE w.tensor LIKE '%.weight'
ORDER BY l.position;

SELECT layer, shape, count, round(mean, 4) AS mean, round(std, 4) AS std,
       round(min, 3) AS min, round(max, 3) AS max, round(near_zero, 3) AS near_zero
FROM weight_stats ORDER BY position;

SELECT write_png('out/weight_stats.png',
       line_plot(stat, layer, value, 'Weights by depth (Lite0)' ORDER BY position)) AS figure
FROM (SELECT layer, position, 'std' AS stat, std AS value FROM weight_stats
      UNION ALL SELECT layer, position, 'fraction near zero', near_zero FROM weight_stats);

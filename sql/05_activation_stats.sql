-- Activation statistics per layer: fraction of exact zeros, Hoyer
-- sparseness ((sqrt(n) - L1/L2) / (sqrt(n) - 1), 0 = dense, 1 = one-hot),
-- mean and spread, averaged over the images; one table and one plot
-- against depth. Plain SQL over the activations table.
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/05_activation_stats.sql
LOAD 'build/release/layercorr.duckdb_extension';

CREATE OR REPLACE TABLE activation_stats AS
WITH per_image AS (
    SELECT layer, path, len(activation) AS n,
           list_count(list_filter(activation, x -> x = 0)) / len(activation) AS zero_fraction,
           list_sum(list_transform(activation, x -> abs(x))) AS l1,
           sqrt(list_sum(list_transform(activation, x -> x * x))) AS l2,
           list_avg(activation) AS mean,
           list_stddev_pop(activation) AS spread
    FROM activations
)
SELECT layer, position, avg(zero_fraction) AS zero_fraction,
       avg(CASE WHEN l2 > 0 THEN (sqrt(n) - l1 / l2) / (sqrt(n) - 1) END) AS hoyer_sparseness,
       avg(mean) AS mean, avg(spread) AS spread
FROM per_image JOIN layers USING (layer)
GROUP BY layer, position ORDER BY position;

SELECT layer, round(zero_fraction, 3) AS zero_fraction, round(hoyer_sparseness, 3) AS hoyer,
       round(mean, 3) AS mean, round(spread, 3) AS spread
FROM activation_stats ORDER BY position;

SELECT write_png('out/activation_sparseness.png',
       line_plot(stat, layer, value, 'Activation sparseness by depth' ORDER BY position)) AS figure
FROM (SELECT layer, position, 'fraction of zeros' AS stat, zero_fraction AS value FROM activation_stats
      UNION ALL SELECT layer, position, 'Hoyer sparseness', hoyer_sparseness FROM activation_stats);

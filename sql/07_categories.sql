-- The classic RSA read-out: mean correlation of image pairs within a
-- category versus between categories, per layer. Categories come from the
-- image metadata — here the coarse ImageNet split animal (classes 0-397)
-- vs object (398-999) of each photo's top-1 class; use any label column
-- of your own images table instead.
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/07_categories.sql
LOAD 'build/release/layercorr.duckdb_extension';

CREATE OR REPLACE TEMP TABLE categories AS
SELECT path, CASE WHEN class_id < 398 THEN 'animal' ELSE 'object' END AS category FROM images;

CREATE OR REPLACE TABLE category_separation AS
WITH keyed AS (
    SELECT layer, m.keys AS keys, m.matrix AS matrix FROM matrices
), cells AS (
    SELECT layer, keys[i] AS a, keys[j] AS b, matrix[i][j] AS r
    FROM keyed, range(1, len(keys) + 1) t1(i), range(1, len(keys) + 1) t2(j)
    WHERE i < j
)
SELECT c.layer, l.position,
       avg(r) FILTER (ca.category = cb.category) AS within,
       avg(r) FILTER (ca.category <> cb.category) AS between,
       avg(r) FILTER (ca.category = cb.category) - avg(r) FILTER (ca.category <> cb.category) AS separation
FROM cells c
JOIN categories ca ON ca.path = c.a
JOIN categories cb ON cb.path = c.b
JOIN layers l ON l.layer = c.layer
GROUP BY c.layer, l.position ORDER BY l.position;

SELECT layer, round(within, 3) AS within, round(between, 3) AS between, round(separation, 3) AS separation
FROM category_separation ORDER BY position;

SELECT write_png('out/category_separation.png',
       line_plot(kind, layer, value, 'Within- vs between-category correlation (animal / object)' ORDER BY position)) AS figure
FROM (SELECT layer, position, 'within category' AS kind, within AS value FROM category_separation
      UNION ALL SELECT layer, position, 'between categories', between FROM category_separation);

-- layercorr demo: run EfficientNet-Lite0 over 100 photos, keep the
-- activations of 13 layers, label each photo with its top-1 class,
-- summarise, and draw the layer-wise decorrelation (PNGs under out/).
-- Run by `make demo` as:  duckdb -unsigned data/demo.duckdb < sql/demo.sql
-- The tables it leaves (images, layers, activations, matrices) are the
-- starting point of the analysis scripts in sql/.

LOAD 'build/release/layercorr.duckdb_extension';
.timer on

-- The model and its capturable layers (the `input` pseudo-layer first).
CREATE OR REPLACE TABLE layers AS
SELECT * FROM nn_layers('data/models/efficientnet_lite0.onnx');
SELECT count(*) AS layers, min(position) AS first, max(position) AS last FROM layers;

-- The photos: an ordinary table, here from a glob.
CREATE OR REPLACE TABLE images AS
SELECT file AS path, parse_filename(file, true) AS name
FROM glob('data/photos/classification/*.jpg')
ORDER BY file;

-- One row per (photo, layer): 13 layers spread from the pixels to the logits.
-- The table form runs the photos on every core and stores finished ones
-- while the next compute. Table functions take constants, so the images
-- table hands its paths over through a variable; `path` joins back to it.
SET VARIABLE photo_paths = (SELECT list(path ORDER BY path) FROM images);
CREATE OR REPLACE TABLE activations AS
FROM nn_activations('data/models/efficientnet_lite0.onnx', getvariable('photo_paths'),
     layers := ['input', 'stem', 'blocks.0', 'blocks.2', 'blocks.4', 'blocks.6', 'blocks.8',
                'blocks.10', 'blocks.12', 'blocks.15', 'head', 'pool', 'logits']);

-- ImageNet labels, and each photo's top-1 class from its logits.
CREATE OR REPLACE TABLE labels AS
SELECT * FROM read_csv('data/labels/imagenet_labels.csv', header = true);

CREATE OR REPLACE TABLE predictions AS
SELECT path,
       list_position(activation, list_max(activation)) - 1 AS class_id,
       list_max(activation) AS logit
FROM activations WHERE layer = 'logits';

CREATE OR REPLACE TABLE images AS
SELECT i.path, i.name, p.class_id, split_part(l.label, ',', 1) AS label
FROM images i JOIN predictions p USING (path) JOIN labels l USING (class_id)
ORDER BY i.path;

-- Summary: rows and vector length per layer, in network order.
SELECT a.layer, l.position, l.shape, count(*) AS images, min(len(a.activation)) AS length,
       round(avg(list_avg(a.activation)), 4) AS mean_activation
FROM activations a JOIN layers l USING (layer)
GROUP BY a.layer, l.position, l.shape
ORDER BY l.position;

-- Top-1 label per image (first 20) and the most frequent classes.
SELECT name, class_id, label FROM images ORDER BY name::INTEGER LIMIT 20;
SELECT label, count(*) AS photos FROM images GROUP BY label ORDER BY photos DESC, label LIMIT 10;

-- Per-layer correlation matrices over the 100 photos, and how alike the
-- layers' similarity structures are (the L x L second-order matrix).
CREATE OR REPLACE TABLE matrices AS
SELECT layer, layer_corr(path, activation) AS m
FROM activations GROUP BY layer;

SELECT l.layer, round(r.pearson, 3) AS similarity_to_input
FROM (SELECT b.layer, rsa(a.m, b.m) AS pearson FROM matrices a, matrices b WHERE a.layer = 'input') r
JOIN layers l USING (layer)
ORDER BY l.position;

-- Pictures (PNG files under out/): the layer x layer matrix, the per-layer
-- matrices in the order of the logits' clustering, and the curve of
-- similarity to the input and to the logits against depth.
SELECT write_png('out/demo_similarity.png',
       similarity_heatmap(layer_similarity(layer, m ORDER BY position), 'Layer x layer similarity (Pearson)')) AS figure
FROM matrices JOIN layers USING (layer);

SELECT write_png('out/demo_matrices.png',
       corr_heatmap_grid(layer, m, (SELECT corr_order(m) FROM matrices WHERE layer = 'logits'),
                         'Image x image Pearson r per layer, ordered by logits clustering' ORDER BY position)) AS figure
FROM matrices JOIN layers USING (layer);

SELECT write_png('out/demo_similarity_by_depth.png',
       line_plot('to ' || a.layer, b.layer, rsa(a.m, b.m), 'Similarity to the input and to the logits, by depth'
                 ORDER BY a.layer, l.position)) AS figure
FROM matrices a, matrices b JOIN layers l ON l.layer = b.layer
WHERE a.layer IN ('input', 'logits');

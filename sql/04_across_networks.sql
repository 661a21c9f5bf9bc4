-- Across networks: Lite0, Lite1 and Lite2 on the same photos (each at its
-- own input size, read from the model files), block outputs compared
-- across models. One table keeps all checkpoints (a `model` column);
-- grouping by (model, layer) gives each model's matrices, a self-join
-- with rsa the cross-model similarities, and layer_similarity over
-- 'model:layer' names one heatmap whose off-diagonal blocks show which
-- layers of one model match which of another.
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/04_across_networks.sql
LOAD 'build/release/layercorr.duckdb_extension';

CREATE OR REPLACE TABLE models AS
SELECT * FROM (VALUES ('lite0', 'data/models/efficientnet_lite0.onnx'),
                      ('lite1', 'data/models/efficientnet_lite1.onnx'),
                      ('lite2', 'data/models/efficientnet_lite2.onnx')) v(model, file);

-- (table functions take literal arguments only: one nn_layers call per model)
CREATE OR REPLACE TABLE model_layers AS
SELECT 'lite0' AS model, * FROM nn_layers('data/models/efficientnet_lite0.onnx')
UNION ALL SELECT 'lite1', * FROM nn_layers('data/models/efficientnet_lite1.onnx')
UNION ALL SELECT 'lite2', * FROM nn_layers('data/models/efficientnet_lite2.onnx');

-- Block outputs plus stem, head and logits, per model (about 25 layers each).
-- The scalar form, since the model differs from row to row.
CREATE OR REPLACE TABLE model_activations AS
SELECT model, path, unnest(nn_activations(file, path,
         ['stem', 'blocks.[0-9]', 'blocks.[0-9][0-9]', 'head', 'logits']), recursive := true)
FROM models, images;

CREATE OR REPLACE TABLE model_matrices AS
SELECT model, layer, layer_corr(path, activation) AS m
FROM model_activations GROUP BY model, layer;

-- Lite0's layers against the best-matching layer of Lite1 and Lite2.
SELECT a.layer AS lite0_layer, b.model,
       arg_max(b.layer, rsa(a.m, b.m)) AS best_match, round(max(rsa(a.m, b.m)), 3) AS similarity
FROM model_matrices a JOIN model_matrices b ON b.model <> 'lite0'
JOIN model_layers la ON la.model = 'lite0' AND la.layer = a.layer
WHERE a.model = 'lite0'
GROUP BY a.layer, b.model, la.position ORDER BY la.position, b.model;

SELECT write_png('out/across_networks.png',
       similarity_heatmap(layer_similarity(m.model || ':' || m.layer, m.m ORDER BY m.model, l.position),
                          'Lite0 / Lite1 / Lite2 layers: Pearson of image x image correlations')) AS figure
FROM model_matrices m JOIN model_layers l USING (model, layer);

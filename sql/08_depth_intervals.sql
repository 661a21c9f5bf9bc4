-- How sure is the depth curve? Similarity of each layer to the input (Pearson
-- of the image x image correlation matrices), by depth, with its 95%
-- bootstrap interval drawn as a band; then which ADJACENT layers differ in
-- their similarity to the input beyond chance.
--
-- The band: rsa_bootstrap(input, layer) draws the 100 photos with
-- replacement 1000 times (pairs of a photo with its own copy left out, as
-- rsatoolbox's bootstrap over stimuli does) and takes the 2.5% and 97.5%
-- percentiles. One fixed seed, so every layer sees the same draws.
--
-- The steps: rsa_bootstrap_diff(input, layer, next layer) is a paired
-- bootstrap of rsa(input, layer) - rsa(input, next layer): in every
-- resample one draw of photos serves both similarities, so what they share
-- (which photos happen to be in the sample, the input's own matrix) cancels
-- and the interval is that of the step itself. Two overlapping bands say
-- little about a step (the curve's values are strongly correlated across
-- layers); the paired interval is the right test. `drop_in_similarity`
-- is positive where the next layer is further from the input, negative
-- where it comes back closer. A step differs beyond chance when its 95%
-- interval excludes 0; with 12 steps tested, the `bonferroni` column asks
-- the same at level 1 - 0.05/12, so that the chance of any false call
-- stays below 5%. The population is "photos like
-- these 100": the intervals say nothing about other kinds of images.
-- Run after `make demo`:  duckdb -unsigned data/demo.duckdb < sql/08_depth_intervals.sql
LOAD 'build/release/layercorr.duckdb_extension';

CREATE OR REPLACE TABLE depth_curve AS
SELECT position, layer, r.estimate, r.ci_low, r.ci_high, r.se
FROM (SELECT l.position, b.layer, rsa_bootstrap(a.m, b.m, 'pearson', 1000, 42) AS r
      FROM matrices a, matrices b JOIN layers l USING (layer)
      WHERE a.layer = 'input');

SELECT layer, round(estimate, 3) AS to_input, round(ci_low, 3) AS ci_low,
       round(ci_high, 3) AS ci_high, round(se, 3) AS se
FROM depth_curve ORDER BY position;

SELECT write_png('out/depth_intervals.png',
       line_plot('Pearson to input', layer, estimate, ci_low, ci_high,
                 'Similarity to the input by depth, 95% bootstrap interval over photos' ORDER BY position)) AS figure
FROM depth_curve;

-- Adjacent layers in network order, and the paired test of each step.
CREATE OR REPLACE TABLE depth_steps AS
WITH ordered AS (
    SELECT m.layer, l.position, lead(m.layer) OVER (ORDER BY l.position) AS next_layer
    FROM matrices m JOIN layers l USING (layer)
), steps AS (
    SELECT position, layer, next_layer, count(*) OVER () AS tests
    FROM ordered WHERE next_layer IS NOT NULL
)
SELECT s.position, s.layer, s.next_layer,
       rsa_bootstrap_diff(i.m, a.m, b.m, 'pearson', 1000, 42) AS step,
       rsa_bootstrap_diff(i.m, a.m, b.m, 'pearson', 1000, 42, 1 - 0.05 / s.tests) AS strict
FROM steps s
JOIN matrices a ON a.layer = s.layer
JOIN matrices b ON b.layer = s.next_layer
JOIN matrices i ON i.layer = 'input';

SELECT layer, next_layer,
       round(step.estimate, 3) AS drop_in_similarity,
       round(step.ci_low, 3) AS ci_low, round(step.ci_high, 3) AS ci_high,
       step.ci_low > 0 OR step.ci_high < 0 AS beyond_chance,
       strict.ci_low > 0 OR strict.ci_high < 0 AS bonferroni
FROM depth_steps ORDER BY position;

SELECT write_png('out/depth_steps.png',
       line_plot('drop to the next layer', layer || ' -> ' || next_layer, step.estimate, step.ci_low, step.ci_high,
                 'Step in similarity to the input between adjacent layers, paired 95% interval' ORDER BY position)) AS figure
FROM depth_steps;

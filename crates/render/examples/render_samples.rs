//! Writes sample figures to `/tmp/render_samples/` for looking at.
//!
//! The data are synthetic but shaped like layercorr's: image activations
//! drawn around a few class prototypes whose share of the signal changes
//! with depth, correlated with Pearson's r.
//!
//! Run with `cargo run --release -p layercorr-render --example render_samples`.

use layercorr_render::{
    heatmap_grid, labeled_matrix, line_plot, matrix_heatmap, Colormap, GridOptions, HeatmapOptions,
    LabeledMatrixOptions, LinePlotOptions, Panel, Series,
};
use std::error::Error;
use std::path::Path;

/// A small deterministic generator (xorshift64*), so the example needs no
/// dependency and draws the same figures every run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal via Box-Muller.
    fn normal(&mut self) -> f64 {
        let u = self.next_f64().max(1e-12);
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Activations of `n` images in `classes` groups (contiguous) with `d`
/// features; `signal` is the weight of the class prototype against noise.
fn activations(rng: &mut Rng, n: usize, classes: usize, d: usize, signal: f64) -> Vec<Vec<f64>> {
    let protos: Vec<Vec<f64>> = (0..classes)
        .map(|_| (0..d).map(|_| rng.normal()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let p = &protos[i * classes / n];
            p.iter()
                .map(|&x| signal * x + (1.0 - signal) * rng.normal())
                .collect()
        })
        .collect()
}

/// The N x N Pearson correlation matrix of the rows of `a`.
fn pearson(a: &[Vec<f64>]) -> Vec<f32> {
    let z: Vec<Vec<f64>> = a
        .iter()
        .map(|r| {
            let m = r.iter().sum::<f64>() / r.len() as f64;
            let s = r.iter().map(|x| (x - m).powi(2)).sum::<f64>().sqrt();
            r.iter().map(|x| (x - m) / s).collect()
        })
        .collect();
    let n = z.len();
    let mut out = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = z[i].iter().zip(&z[j]).map(|(x, y)| x * y).sum::<f64>() as f32;
        }
    }
    out
}

/// Euclidean distances between the rows of `a`.
fn euclidean(a: &[Vec<f64>]) -> Vec<f32> {
    let n = a.len();
    let mut out = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let d2: f64 = a[i].iter().zip(&a[j]).map(|(x, y)| (x - y).powi(2)).sum();
            out[i * n + j] = d2.sqrt() as f32;
        }
    }
    out
}

fn write(dir: &Path, name: &str, png: Vec<u8>) -> Result<(), Box<dyn Error>> {
    let path = dir.join(name);
    std::fs::write(&path, png)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = Path::new("/tmp/render_samples");
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    // 1. A 100 x 100 block-structured correlation matrix, no labels.
    let acts = activations(&mut rng, 100, 5, 64, 0.6);
    let m = pearson(&acts);
    let png = matrix_heatmap(
        &m,
        100,
        &HeatmapOptions {
            title: "block5.project: image x image".into(),
            axis_label: "image (sorted by class)".into(),
            colorbar_label: "Pearson r".into(),
            ..Default::default()
        },
    )?;
    write(dir, "heatmap_100.png", png)?;

    // 1b. Small labelled image matrix, with one constant (NaN) image.
    let names: Vec<String> = [
        "cat_01.jpg",
        "cat_02.jpg",
        "cat_03.jpg",
        "dog_01.jpg",
        "dog_02.jpg",
        "dog_03.jpg",
        "car_01.jpg",
        "car_02.jpg",
        "a_very_long_file_name_for_a_truck_photo_04.jpg",
        "blank.png",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut acts = activations(&mut rng, 10, 3, 64, 0.7);
    acts[9] = vec![0.5; 64];
    let m = pearson(&acts);
    let png = matrix_heatmap(
        &m,
        10,
        &HeatmapOptions {
            title: "stem: 10 images".into(),
            tick_labels: Some(names),
            colorbar_label: "Pearson r".into(),
            ..Default::default()
        },
    )?;
    write(dir, "heatmap_10_labels_nan.png", png)?;

    // 1c. 2000 images, Euclidean distances, averaged down.
    let acts = activations(&mut rng, 2000, 8, 32, 0.5);
    let m = euclidean(&acts);
    let max = m.iter().cloned().fold(0f32, f32::max) as f64;
    let png = matrix_heatmap(
        &m,
        2000,
        &HeatmapOptions {
            title: "logits: 2000 images".into(),
            value_range: (0.0, max.ceil()),
            colorbar_label: "Euclidean distance".into(),
            ..Default::default()
        },
    )?;
    write(dir, "heatmap_2000_euclidean.png", png)?;

    // 2. A 12 x 12 layer-similarity matrix with values.
    let layers: Vec<String> = [
        "input", "stem", "block0", "block1.0", "block1.1", "block2.0", "block2.1", "block3.0",
        "block4.0", "block5.0", "head", "logits",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let l = layers.len();
    let mut sim = vec![0f64; l * l];
    for i in 0..l {
        for j in 0..l {
            let d = (i as f64 - j as f64).abs();
            let noise = 0.04 * (((i * 7 + j * 7 + i * j) % 5) as f64 - 2.0);
            let v = if i == j {
                1.0
            } else {
                (-d / 3.0).exp() * 1.1 - 0.15 + noise
            };
            sim[i * l + j] = v.clamp(-1.0, 1.0);
        }
    }
    for i in 0..l {
        for j in 0..i {
            sim[i * l + j] = sim[j * l + i];
        }
    }
    let png = labeled_matrix(
        &sim,
        l,
        &layers,
        &LabeledMatrixOptions {
            title: "Layer similarity (RSA)".into(),
            colorbar_label: "Pearson r of RSMs".into(),
            ..Default::default()
        },
    )?;
    write(dir, "labeled_12.png", png)?;

    // 2b. CKA-like in [0, 1]: sequential map.
    let cka: Vec<f64> = sim.iter().map(|v| (v + 1.0) / 2.0).collect();
    let png = labeled_matrix(
        &cka,
        l,
        &layers,
        &LabeledMatrixOptions {
            title: "Linear CKA".into(),
            value_range: (0.0, 1.0),
            colormap: Some(Colormap::Sequential),
            colorbar_label: "CKA".into(),
            axis_label: "layer".into(),
            ..Default::default()
        },
    )?;
    write(dir, "labeled_12_cka.png", png)?;

    // 3. A 3-panel grid: structure emerging with depth.
    let n = 60;
    let mut panels_data = Vec::new();
    for signal in [0.15, 0.45, 0.8] {
        panels_data.push(pearson(&activations(&mut rng, n, 4, 64, signal)));
    }
    let titles = ["stem", "block3.0.expand", "logits"];
    let panels: Vec<Panel> = titles
        .iter()
        .zip(&panels_data)
        .map(|(t, v)| Panel {
            title: t.to_string(),
            values: v,
            n,
        })
        .collect();
    let png = heatmap_grid(
        &panels,
        &GridOptions {
            title: "Image similarity by layer (60 images)".into(),
            colorbar_label: "Pearson r".into(),
            ..Default::default()
        },
    )?;
    write(dir, "grid_3.png", png)?;

    // 4. A line plot: two series over layer names.
    let depth: Vec<String> = [
        "input",
        "stem",
        "block0.depthwise",
        "block0.project",
        "block1.0.expand",
        "block1.0.project",
        "block1.1.project",
        "block2.0.project",
        "block2.1.project",
        "block3.0.project",
        "block3.1.project",
        "block3.2.project",
        "block4.0.project",
        "block5.0.project",
        "block6.0.project",
        "head",
        "logits",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let k = depth.len();
    let to_input: Vec<f64> = (0..k)
        .map(|i| (-(i as f64) / 5.0).exp() * 0.95 + 0.03 * ((i % 3) as f64 - 1.0))
        .collect();
    let to_output: Vec<f64> = (0..k)
        .map(|i| 1.0 / (1.0 + (-(i as f64 - 11.0) / 1.8).exp()) * 0.97 + 0.02)
        .collect();
    // A 95% interval around each curve, missing at one layer of the first.
    let interval = |v: &[f64], gap: Option<usize>| -> (Vec<f64>, Vec<f64>) {
        let half = |i: usize| {
            if Some(i) == gap {
                f64::NAN
            } else {
                0.04 + 0.01 * (i % 4) as f64
            }
        };
        (
            v.iter().enumerate().map(|(i, y)| y - half(i)).collect(),
            v.iter().enumerate().map(|(i, y)| y + half(i)).collect(),
        )
    };
    let (in_low, in_high) = interval(&to_input, Some(9));
    let (out_low, out_high) = interval(&to_output, None);
    let png = line_plot(
        &[
            Series::new("RSA with input", to_input).with_band(in_low, in_high),
            Series::new("RSA with logits", to_output).with_band(out_low, out_high),
        ],
        &LinePlotOptions {
            title: "Where the input's structure is lost".into(),
            x_label: "layer".into(),
            y_label: "Pearson r of RSMs".into(),
            x_tick_labels: Some(depth),
            ..Default::default()
        },
    )?;
    write(dir, "lineplot.png", png)?;

    // Stress cases: the largest sizes each figure is meant for.
    // 5. 60 labelled images (the most that keep their labels).
    let acts = activations(&mut rng, 60, 6, 64, 0.5);
    let names: Vec<String> = (0..60)
        .map(|i| format!("n0144{i:04}_{}.JPEG", i * 37 % 1000))
        .collect();
    let png = matrix_heatmap(
        &pearson(&acts),
        60,
        &HeatmapOptions {
            title: "block2.1.project, 60 images".into(),
            tick_labels: Some(names),
            colorbar_label: "Pearson r".into(),
            ..Default::default()
        },
    )?;
    write(dir, "heatmap_60_labels.png", png)?;

    // 6. 30 layers: values at scale 1.
    let l = 30;
    let layers: Vec<String> = (0..l)
        .map(|i| format!("blocks.{}.{}.conv_pwl", i / 3, i % 3))
        .collect();
    let sim: Vec<f64> = (0..l * l)
        .map(|k| {
            let d = ((k / l) as f64 - (k % l) as f64).abs();
            (-d / 6.0).exp() * 1.2 - 0.2
        })
        .map(|v: f64| v.min(1.0))
        .collect();
    let png = labeled_matrix(
        &sim,
        l,
        &layers,
        &LabeledMatrixOptions {
            title: "30 layers".into(),
            colorbar_label: "Pearson r of RSMs".into(),
            ..Default::default()
        },
    )?;
    write(dir, "labeled_30.png", png)?;

    // 7. Seven panels wrap into rows of four and three.
    let panels_data: Vec<Vec<f32>> = (0..7)
        .map(|i| pearson(&activations(&mut rng, 40, 4, 48, 0.1 + 0.12 * i as f64)))
        .collect();
    let panels: Vec<Panel> = panels_data
        .iter()
        .enumerate()
        .map(|(i, v)| Panel {
            title: format!("blocks.{i}.0.conv_pwl"),
            values: v,
            n: 40,
        })
        .collect();
    let png = heatmap_grid(
        &panels,
        &GridOptions {
            title: "Seven layers".into(),
            colorbar_label: "Pearson r".into(),
            ..Default::default()
        },
    )?;
    write(dir, "grid_7.png", png)?;

    // 8. 80 layers: every other name is shown.
    let k = 80;
    let names: Vec<String> = (0..k).map(|i| format!("layer{i:02}")).collect();
    let ys = |phase: f64| -> Vec<f64> {
        (0..k)
            .map(|i| ((i as f64 / 9.0 + phase).sin() * 0.4 + 0.5) * (1.0 - i as f64 / 200.0))
            .collect()
    };
    let png = line_plot(
        &[
            Series::new("epoch 1", ys(0.0)),
            Series::new("epoch 10", ys(0.8)),
            Series::new("epoch 90", ys(1.6)),
        ],
        &LinePlotOptions {
            title: "Sparseness by layer".into(),
            x_label: "layer".into(),
            y_label: "fraction of zeros".into(),
            x_tick_labels: Some(names),
            y_range: Some((0.0, 1.0)),
            ..Default::default()
        },
    )?;
    write(dir, "lineplot_80.png", png)?;

    // 9. Edge case: a tiny matrix with fixed 6 px cells and a long title;
    // the canvas widens for the title and the colour bar keeps its height.
    let acts = activations(&mut rng, 5, 2, 16, 0.6);
    let png = matrix_heatmap(
        &pearson(&acts),
        5,
        &HeatmapOptions {
            title: "A tiny matrix with a long title — ρ by layer".into(),
            cell_px: Some(6),
            ..Default::default()
        },
    )?;
    write(dir, "heatmap_tiny.png", png)?;
    Ok(())
}

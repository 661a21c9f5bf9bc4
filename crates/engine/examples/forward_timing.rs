//! Where one image's time goes, on one thread: decode + preprocess, then
//! forward passes at several batch sizes; then the whole pipeline
//! (`activations_for_images`) on every core. Run it under `perf record`
//! to see the operators.
//!
//! `forward_timing MODEL PHOTO_DIR [LAYER,LAYER,...] [ROUNDS] [BATCH,BATCH,...]`
//! (defaults: `logits`, 3 rounds, batch 1; medians of the rounds).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use layercorr_engine::files::{FileSource, LocalFiles};
use layercorr_engine::image::{decode_for, preprocess, DEFAULT_MAX_PIXELS};
use layercorr_engine::model::{cached_plan, Overrides};
use layercorr_engine::pipeline::{activations_for_images, prepare, read_images};
use layercorr_engine::pooling::Pooling;

type Error = Box<dyn std::error::Error>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `ms` per image over the median of `rounds` runs of `f`.
fn timed(
    rounds: usize,
    images: usize,
    mut f: impl FnMut() -> Result<(), Error>,
) -> Result<f64, Error> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / images.max(1) as f64);
    }
    Ok(median(times))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, dir, rest @ ..] = args.as_slice() else {
        return Err("usage: forward_timing MODEL PHOTO_DIR [LAYERS] [ROUNDS] [BATCHES]".into());
    };
    let layers: Vec<String> = rest
        .first()
        .map_or("logits", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();
    let rounds: usize = rest.get(1).map_or(Ok(3), |s| s.parse())?;
    let batches: Vec<usize> = rest
        .get(2)
        .map_or("1", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut paths: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".jpg"))
        .collect();
    paths.sort();
    let files: Arc<dyn FileSource> = Arc::new(LocalFiles);
    let prepared = prepare(
        files.clone(),
        Path::new(model),
        Some(&layers),
        Pooling::None,
        &Overrides::none(),
    )?;
    let n = paths.len();
    let names: Vec<&str> = paths.iter().map(String::as_str).collect();
    let pre = &prepared.model.preprocessing;

    let mut tensors = Vec::new();
    let ms = timed(rounds, n, || {
        tensors = read_images(files.as_ref(), &names)
            .into_iter()
            .zip(&names)
            .map(|(bytes, p)| -> Result<Vec<f32>, Error> {
                let rgb = decode_for(&bytes?, Path::new(p), DEFAULT_MAX_PIXELS, pre)?;
                Ok(preprocess(&rgb, pre, Path::new(p))?)
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    })?;
    println!("decode + preprocess, 1 thread: {ms:.2} ms/image");

    for batch in batches {
        let plan = cached_plan(
            &prepared.model_key,
            &prepared.model,
            &prepared.layers,
            batch,
        )?;
        let whole = n / batch.max(1) * batch;
        let ms = timed(rounds, whole, || {
            for chunk in tensors.chunks_exact(batch.max(1)) {
                std::hint::black_box(plan.run(chunk, &names[..chunk.len()])?);
            }
            Ok(())
        })?;
        println!("forward passes, batch {batch}, 1 thread: {ms:.2} ms/image");
    }

    let ms = timed(rounds, n, || {
        let images = names
            .iter()
            .copied()
            .zip(read_images(files.as_ref(), &names))
            .collect();
        std::hint::black_box(activations_for_images(&prepared, images, false)?);
        Ok(())
    })?;
    println!(
        "activations_for_images, {} threads: {ms:.2} ms/image",
        rayon::current_num_threads()
    );
    Ok(())
}

//! Times one forward pass of a model per batch size, to pick the batch
//! that `nn_activations` uses: `cargo run --release --example
//! tract_batch_timing -- data/models/efficientnet_lite0.onnx logits`
//! (`BATCHES=1,4` picks the batch sizes).

use std::path::Path;
use std::time::Instant;

use layercorr::model::{cached_model, cached_plan};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("data/models/efficientnet_lite0.onnx");
    let layers: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        vec!["logits".into()]
    };
    if let Ok(n) = std::env::var("TRACT_THREADS") {
        let n: usize = n.parse().expect("TRACT_THREADS is a number");
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(n),
        );
    }
    let model = cached_model(Path::new(model_path)).expect("model loads");
    let len = model.preprocessing.tensor_len();
    let batches: Vec<usize> = std::env::var("BATCHES")
        .ok()
        .map(|b| b.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16]);
    for batch in batches {
        let plan = cached_plan(Path::new(model_path), &layers, batch).expect("plan builds");
        let images: Vec<Vec<f32>> = (0..batch)
            .map(|i| {
                (0..len)
                    .map(|j| ((i * 31 + j) % 255) as f32 / 128.0 - 1.0)
                    .collect()
            })
            .collect();
        let names: Vec<&str> = (0..batch).map(|_| "synthetic").collect();
        plan.run(&images, &names).expect("warm-up runs");
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            plan.run(&images, &names).expect("runs");
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "batch {batch:2}: {:.1} ms per image (median of 20)",
            times[10] * 1e3 / batch as f64
        );
    }
}

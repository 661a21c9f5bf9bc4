//! Where one forward pass's time goes, operator by operator: builds the
//! plan as layercorr does (batch 1, the given layers as outputs, tract's
//! decluttering, then layercorr's own convolution kernels unless
//! `--tract`), runs it on a constant image, and prints the time of each op
//! kind and of the slowest nodes (means over the rounds after 3 warm-ups).
//!
//! `op_profile MODEL [LAYER,LAYER,...] [ROUNDS] [--tract]` (defaults: the
//! model's own outputs, 30 rounds). The input is `1 x 3 x 224 x 224`.

use std::collections::HashMap;
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

const WARM_UPS: usize = 3;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let tract_only = args.iter().any(|a| a == "--tract");
    let positional: Vec<&String> = args.iter().skip(1).filter(|a| *a != "--tract").collect();
    let Some(path) = positional.first() else {
        return Err(TractError::msg(
            "usage: op_profile MODEL [LAYER,LAYER,...] [ROUNDS] [--tract]",
        ));
    };
    let rounds: usize = positional.get(2).map_or(Ok(30), |r| r.parse())?;
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true)
        .model_for_path(path)?;
    let shape = [1usize, 3, 224, 224];
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
    if let Some(layers) = positional.get(1).filter(|l| !l.is_empty()) {
        model.select_outputs_by_name(layers.split(',').collect::<Vec<_>>())?;
    }
    let mut typed = model.into_typed()?.into_decluttered()?;
    if !tract_only {
        let swapped = layercorr_engine::model::swap_in_own_kernels(&mut typed)?;
        println!("{swapped} ops on layercorr's kernels");
    }
    let plan = typed.into_optimized()?.into_runnable()?;
    let input = Tensor::from_shape(&shape, &vec![0.5f32; shape.iter().product()])?;
    let mut total_ms: HashMap<usize, f64> = HashMap::new();
    for round in 0..rounds + WARM_UPS {
        let mut state = SimpleState::new(&plan)?;
        let inputs = tvec!(input.clone().into_tvalue());
        state.run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
            let start = Instant::now();
            let out = eval(ctx, op_state, node, inputs);
            if round >= WARM_UPS {
                *total_ms.entry(node.id).or_default() += start.elapsed().as_secs_f64() * 1e3;
            }
            out
        })?;
    }
    let model = plan.model();
    let mean = |id: &usize| total_ms[id] / rounds.max(1) as f64;
    let mut by_kind: HashMap<String, f64> = HashMap::new();
    for id in total_ms.keys() {
        *by_kind
            .entry(model.node(*id).op().name().to_string())
            .or_default() += mean(id);
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "forward pass {:.2} ms",
        kinds.iter().map(|k| k.1).sum::<f64>()
    );
    for (kind, ms) in &kinds {
        println!("{ms:8.3} ms  {kind}");
    }
    let mut nodes: Vec<usize> = total_ms.keys().copied().collect();
    nodes.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    println!("slowest nodes:");
    for id in nodes.iter().take(25) {
        let node = model.node(*id);
        let shape = model.outlet_fact(OutletId::new(*id, 0))?.shape.to_tvec();
        let op = node.op().name();
        println!("{:8.3} ms  {op:<22} {} {shape:?}", mean(id), node.name);
    }
    Ok(())
}

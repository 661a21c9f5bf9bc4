//! Process-wide caches of parsed models and optimised plans.
//!
//! Parsing and optimising EfficientNet takes a noticeable fraction of a
//! second, while a query calls `nn_activations` once per chunk on every
//! DuckDB thread: models are cached by file (and reloaded when the file's
//! size or modification time changes), plans by model, layers and batch.
//! Each plan entry has its own lock so that two threads asking for the same
//! plan build it once, while other plans stay available.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{LoadedModel, ModelError, Plan};

type FileStamp = (PathBuf, Option<SystemTime>, u64);
type PlanKey = (FileStamp, Vec<String>, usize);
type PlanSlot = Arc<Mutex<Option<Arc<Plan>>>>;

/// At most this many plans are kept; older ones are dropped when full.
const MAX_PLANS: usize = 32;

static MODELS: Mutex<Vec<(FileStamp, Arc<LoadedModel>)>> = Mutex::new(Vec::new());
static PLANS: Mutex<Option<HashMap<PlanKey, PlanSlot>>> = Mutex::new(None);

fn stamp(path: &Path) -> Result<FileStamp, ModelError> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok((canonical, meta.modified().ok(), meta.len()))
}

/// The parsed model at `path`, loading it on first use or after a change.
pub fn cached_model(path: &Path) -> Result<Arc<LoadedModel>, ModelError> {
    let key = stamp(path)?;
    {
        let models = MODELS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, model)) = models.iter().find(|(k, _)| *k == key) {
            return Ok(model.clone());
        }
    }
    let model = Arc::new(LoadedModel::load(path)?);
    let mut models = MODELS.lock().unwrap_or_else(PoisonError::into_inner);
    models.retain(|(k, _)| k.0 != key.0);
    models.push((key, model.clone()));
    Ok(model)
}

/// The plan for `layers` (resolved names) of the model at `path` with a
/// fixed `batch`, building it on first use.
pub fn cached_plan(path: &Path, layers: &[String], batch: usize) -> Result<Arc<Plan>, ModelError> {
    let model = cached_model(path)?;
    let key = (stamp(path)?, layers.to_vec(), batch);
    let slot = {
        let mut plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
        let plans = plans.get_or_insert_with(HashMap::new);
        if !plans.contains_key(&key) && plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.entry(key).or_default().clone()
    };
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(plan) = slot.as_ref() {
        return Ok(plan.clone());
    }
    let plan = Arc::new(Plan::build(model, layers.to_vec(), batch)?);
    *slot = Some(plan.clone());
    Ok(plan)
}

//! Process-wide caches of parsed models and optimised plans.
//!
//! Parsing and optimising a network takes a noticeable fraction of a
//! second, while a query calls `nn_activations` once per chunk on every
//! DuckDB thread. Models are read through the caller's [`FileSource`] on
//! every use (so the host's sandbox is asked every time) and cached by
//! path, length and a hash of their bytes; plans by model, layers, batch
//! and convolution kernels. Each plan entry has its own lock so that two
//! threads asking for the same plan build it once, while other plans stay
//! available.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{LoadedModel, ModelError, Overrides, Plan};
use crate::files::{FileSource, MAX_MODEL_BYTES};

/// What identifies one version of a model file: its path, its length and a
/// hash of its bytes, and the preprocessing overrides it is used with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    path: String,
    len: usize,
    hash: u64,
    overrides: Overrides,
}

type PlanKey = (ModelKey, Vec<String>, usize, bool);
type PlanSlot = Arc<Mutex<Option<Arc<Plan>>>>;

/// At most this many models are kept; the oldest is dropped when full.
const MAX_MODELS: usize = 8;
/// At most this many plans are kept; all are dropped when full.
const MAX_PLANS: usize = 32;

static MODELS: Mutex<Vec<(ModelKey, Arc<LoadedModel>)>> = Mutex::new(Vec::new());
static PLANS: Mutex<Option<HashMap<PlanKey, PlanSlot>>> = Mutex::new(None);
static OWN_KERNELS: AtomicBool = AtomicBool::new(true);

/// Chooses the convolution kernels of plans built from now on: layercorr's
/// own (`true`, the default; see [`super::swap_in_own_kernels`]) or tract's.
pub fn set_own_kernels(own: bool) {
    OWN_KERNELS.store(own, Ordering::Relaxed);
}

/// Whether plans use layercorr's own convolution kernels.
pub fn own_kernels() -> bool {
    OWN_KERNELS.load(Ordering::Relaxed)
}

/// The parsed model at `path`, read through `files`, with the key that
/// identifies this version of it.
pub fn cached_model(
    files: &dyn FileSource,
    path: &Path,
) -> Result<(ModelKey, Arc<LoadedModel>), ModelError> {
    let name = path.to_string_lossy();
    let bytes = files
        .read(&name, MAX_MODEL_BYTES)
        .map_err(|e| ModelError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let key = ModelKey {
        path: name.into_owned(),
        len: bytes.len(),
        hash: hasher.finish(),
        overrides: Overrides::none(),
    };
    {
        let models = MODELS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, model)) = models.iter().find(|(k, _)| *k == key) {
            return Ok((key, model.clone()));
        }
    }
    let model = Arc::new(LoadedModel::from_bytes(&bytes, path)?);
    Ok((key.clone(), remember(key, model)))
}

/// Keeps `model` under `key`, dropping other versions of the same file
/// (and their overridden variants).
fn remember(key: ModelKey, model: Arc<LoadedModel>) -> Arc<LoadedModel> {
    let mut models = MODELS.lock().unwrap_or_else(PoisonError::into_inner);
    models.retain(|(k, _)| k.path != key.path || (k.len == key.len && k.hash == key.hash));
    if models.len() >= MAX_MODELS {
        models.remove(0);
    }
    models.push((key, model.clone()));
    model
}

/// [`cached_model`] with the query's preprocessing `overrides` in force;
/// each set of overrides is its own cached model (and plans).
pub fn cached_model_with(
    files: &dyn FileSource,
    path: &Path,
    overrides: &Overrides,
) -> Result<(ModelKey, Arc<LoadedModel>), ModelError> {
    let (base_key, base) = cached_model(files, path)?;
    if overrides.is_empty() {
        return Ok((base_key, base));
    }
    let key = ModelKey {
        overrides: overrides.clone(),
        ..base_key
    };
    {
        let models = MODELS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, model)) = models.iter().find(|(k, _)| *k == key) {
            return Ok((key, model.clone()));
        }
    }
    let model = Arc::new(base.with_overrides(overrides)?);
    Ok((key.clone(), remember(key, model)))
}

/// The plan for `layers` (resolved names) of `model` (identified by `key`)
/// with a fixed `batch`, building it on first use.
pub fn cached_plan(
    key: &ModelKey,
    model: &Arc<LoadedModel>,
    layers: &[String],
    batch: usize,
) -> Result<Arc<Plan>, ModelError> {
    let own = own_kernels();
    let plan_key = (key.clone(), layers.to_vec(), batch, own);
    let slot = {
        let mut plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
        let plans = plans.get_or_insert_with(HashMap::new);
        if !plans.contains_key(&plan_key) && plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.entry(plan_key).or_default().clone()
    };
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(plan) = slot.as_ref() {
        return Ok(plan.clone());
    }
    let plan = Arc::new(Plan::build(model.clone(), layers.to_vec(), batch)?);
    *slot = Some(plan.clone());
    Ok(plan)
}

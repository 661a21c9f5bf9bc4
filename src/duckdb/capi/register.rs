//! The three shapes of SQL function we register through the raw C API —
//! table, scalar and aggregate — each as a trait plus `extern "C"`
//! trampolines that catch panics and report errors through DuckDB.
//!
//! A function file implements one trait and `mod.rs` lists it; no function
//! file touches callbacks, state pointers or error plumbing.

use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use libduckdb_sys as ffi;

use super::host::{Host, HostFiles, Settings};
use super::input::Chunk;
use super::output::{Output, OutputChunk};
use super::types::{LogicalType, TypeFn};
use super::value::Value;
use super::{c_string, guard, message};
use crate::duckdb::error::{Error, Result};

/// What a scalar or table function call may use of its host: the settings
/// in force and DuckDB's file system (opened on first use).
pub struct CallContext {
    host: Host,
    /// The host's settings when the call started.
    pub settings: Settings,
    files: OnceLock<Arc<HostFiles>>,
}

impl CallContext {
    pub(super) fn new(context: ffi::duckdb_client_context) -> Result<CallContext> {
        let host = Host::new(context)?;
        let settings = host.settings()?;
        Ok(CallContext {
            host,
            settings,
            files: OnceLock::new(),
        })
    }

    /// DuckDB's file system, through which every file is read and written.
    pub fn files(&self) -> Result<Arc<HostFiles>> {
        if let Some(files) = self.files.get() {
            return Ok(files.clone());
        }
        let files = self.host.files()?;
        Ok(self.files.get_or_init(|| files).clone())
    }
}

/// The arguments a table function was called with, at bind time.
pub struct BindArgs(ffi::duckdb_bind_info);

impl BindArgs {
    pub(super) fn from_raw(info: ffi::duckdb_bind_info) -> BindArgs {
        BindArgs(info)
    }
    /// Positional argument `index`.
    pub fn positional(&self, index: usize) -> Value {
        // SAFETY: bind info is live during bind; DuckDB returns an owned value.
        Value(unsafe { ffi::duckdb_bind_get_parameter(self.0, index as u64) })
    }
    /// Named argument `name`, if given.
    pub fn named(&self, name: &str) -> Option<Value> {
        let c_name = c_string(name);
        // SAFETY: bind info is live during bind; a missing parameter is NULL.
        let value = unsafe { ffi::duckdb_bind_get_named_parameter(self.0, c_name.as_ptr()) };
        (!value.is_null()).then_some(Value(value))
    }
}

/// What a table function's bind returns: its bind data and result columns.
pub type Bound<B> = Result<(B, Vec<(&'static str, LogicalType)>)>;

/// A table function: bind once per query, then produce chunks until done.
pub trait TableFunction {
    /// What bind learns from the arguments (read-only while scanning).
    type Bind: Send + Sync + 'static;
    /// The scan's progress.
    type State: Send + 'static;
    /// SQL name.
    const NAME: &'static str;
    /// Positional parameter types.
    fn parameters() -> Vec<LogicalType>;
    /// Named parameters.
    fn named_parameters() -> Vec<(&'static str, LogicalType)> {
        Vec::new()
    }
    /// Reads the arguments and declares the result columns.
    fn bind(args: &BindArgs, ctx: &CallContext) -> Bound<Self::Bind>;
    /// Starts a scan.
    fn init(bind: &Self::Bind) -> Result<Self::State>;
    /// Fills `output` with up to `output.capacity()` rows; returns how many
    /// (0 ends the scan).
    fn next(bind: &Self::Bind, state: &mut Self::State, output: &mut OutputChunk) -> Result<usize>;
}

/// The next page (at most one 2048-row vector) of an in-memory result,
/// advancing `next_row`; for table functions that list precomputed rows.
pub fn next_page<'a, T>(rows: &'a [T], next_row: &mut usize) -> &'a [T] {
    let rest = &rows[(*next_row).min(rows.len())..];
    let page = &rest[..rest.len().min(2048)];
    *next_row += page.len();
    page
}

unsafe extern "C" fn drop_box<T>(ptr: *mut c_void) {
    if !ptr.is_null() {
        drop(Box::from_raw(ptr as *mut T));
    }
}

unsafe extern "C" fn table_bind<T: TableFunction>(info: ffi::duckdb_bind_info) {
    let result = guard(|| {
        let mut context: ffi::duckdb_client_context = std::ptr::null_mut();
        ffi::duckdb_table_function_get_client_context(info, &mut context);
        let ctx = CallContext::new(context)?;
        T::bind(&BindArgs::from_raw(info), &ctx)
    });
    match result {
        Ok((bind, columns)) => {
            for (name, ty) in columns {
                let name = c_string(name);
                ffi::duckdb_bind_add_result_column(info, name.as_ptr(), ty.0);
            }
            let boxed = Box::into_raw(Box::new(bind)) as *mut c_void;
            ffi::duckdb_bind_set_bind_data(info, boxed, Some(drop_box::<T::Bind>));
        }
        Err(e) => {
            let msg = message(T::NAME, &e);
            ffi::duckdb_bind_set_error(info, msg.as_ptr());
        }
    }
}

unsafe extern "C" fn table_init<T: TableFunction>(info: ffi::duckdb_init_info) {
    let bind = ffi::duckdb_init_get_bind_data(info) as *const T::Bind;
    let result = guard(|| T::init(&*bind));
    match result {
        Ok(state) => {
            let boxed = Box::into_raw(Box::new(state)) as *mut c_void;
            ffi::duckdb_init_set_init_data(info, boxed, Some(drop_box::<T::State>));
            ffi::duckdb_init_set_max_threads(info, 1);
        }
        Err(e) => {
            let msg = message(T::NAME, &e);
            ffi::duckdb_init_set_error(info, msg.as_ptr());
        }
    }
}

unsafe extern "C" fn table_next<T: TableFunction>(
    info: ffi::duckdb_function_info,
    output: ffi::duckdb_data_chunk,
) {
    let bind = ffi::duckdb_function_get_bind_data(info) as *const T::Bind;
    let state = ffi::duckdb_function_get_init_data(info) as *mut T::State;
    match guard(|| T::next(&*bind, &mut *state, &mut OutputChunk::from_raw(output))) {
        Ok(rows) => ffi::duckdb_data_chunk_set_size(output, rows as u64),
        Err(e) => {
            ffi::duckdb_data_chunk_set_size(output, 0);
            let msg = message(T::NAME, &e);
            ffi::duckdb_function_set_error(info, msg.as_ptr());
        }
    }
}

/// Registers table function `T` on `con`.
pub fn register_table<T: TableFunction>(con: ffi::duckdb_connection) -> Result<()> {
    // SAFETY: plain C API calls on a function object we own until destroyed.
    unsafe {
        let mut f = ffi::duckdb_create_table_function();
        let name = c_string(T::NAME);
        ffi::duckdb_table_function_set_name(f, name.as_ptr());
        for ty in T::parameters() {
            ffi::duckdb_table_function_add_parameter(f, ty.0);
        }
        for (pname, ty) in T::named_parameters() {
            let pname = c_string(pname);
            ffi::duckdb_table_function_add_named_parameter(f, pname.as_ptr(), ty.0);
        }
        ffi::duckdb_table_function_set_bind(f, Some(table_bind::<T>));
        ffi::duckdb_table_function_set_init(f, Some(table_init::<T>));
        ffi::duckdb_table_function_set_function(f, Some(table_next::<T>));
        let state = ffi::duckdb_register_table_function(con, f);
        ffi::duckdb_destroy_table_function(&mut f);
        if state != ffi::DuckDBSuccess {
            return Err(Error::Host(format!(
                "could not register table function {}",
                T::NAME
            )));
        }
    }
    Ok(())
}

/// A scalar function with one implementation for all its overloads.
/// The overloads of a function whose trailing arguments are optional in
/// order: `fixed`, then `fixed` with each prefix of `optional` (none, the
/// first, the first two, ...), all returning `result`.
pub fn trailing_optional(
    fixed: &[TypeFn],
    optional: &[TypeFn],
    result: TypeFn,
) -> Vec<(Vec<LogicalType>, LogicalType)> {
    (0..=optional.len())
        .map(|k| {
            let params = fixed.iter().chain(&optional[..k]).map(|t| t()).collect();
            (params, result())
        })
        .collect()
}

pub trait ScalarFunction {
    /// SQL name.
    const NAME: &'static str;
    /// Overloads: parameter types and return type.
    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)>;
    /// Computes `output` for every row of `input` (whose column count tells
    /// the overload). NULL arguments arrive as NULL rows (special handling).
    fn invoke(input: &Chunk, output: &mut Output, ctx: &CallContext) -> Result<()>;
    /// Whether the function has side effects or must run per row (e.g. it
    /// writes files).
    fn volatile() -> bool {
        false
    }
}

/// Per-thread state of a scalar function: the call's host context.
unsafe extern "C" fn scalar_init<T: ScalarFunction>(info: ffi::duckdb_init_info) {
    let result = guard(|| {
        let mut context: ffi::duckdb_client_context = std::ptr::null_mut();
        ffi::duckdb_scalar_function_init_get_client_context(info, &mut context);
        CallContext::new(context)
    });
    match result {
        Ok(ctx) => {
            let boxed = Box::into_raw(Box::new(ctx)) as *mut c_void;
            ffi::duckdb_scalar_function_init_set_state(info, boxed, Some(drop_box::<CallContext>));
        }
        Err(e) => {
            let msg = message(T::NAME, &e);
            ffi::duckdb_scalar_function_init_set_error(info, msg.as_ptr());
        }
    }
}

unsafe extern "C" fn scalar_invoke<T: ScalarFunction>(
    info: ffi::duckdb_function_info,
    input: ffi::duckdb_data_chunk,
    output: ffi::duckdb_vector,
) {
    let result = guard(|| {
        let ctx = ffi::duckdb_scalar_function_get_state(info) as *const CallContext;
        if ctx.is_null() {
            return Err(Error::internal("the host gave no per-thread state"));
        }
        let input = Chunk::from_raw(input);
        let mut output = Output::from_raw(output, input.rows());
        T::invoke(&input, &mut output, &*ctx)
    });
    if let Err(e) = result {
        let msg = message(T::NAME, &e);
        ffi::duckdb_scalar_function_set_error(info, msg.as_ptr());
    }
}

/// Registers scalar function `T` with all its overloads on `con`.
pub fn register_scalar<T: ScalarFunction>(con: ffi::duckdb_connection) -> Result<()> {
    // SAFETY: plain C API calls on objects we own until destroyed.
    unsafe {
        let name = c_string(T::NAME);
        let mut set = ffi::duckdb_create_scalar_function_set(name.as_ptr());
        for (params, ret) in T::signatures() {
            let mut f = ffi::duckdb_create_scalar_function();
            ffi::duckdb_scalar_function_set_name(f, name.as_ptr());
            for p in &params {
                ffi::duckdb_scalar_function_add_parameter(f, p.0);
            }
            ffi::duckdb_scalar_function_set_return_type(f, ret.0);
            ffi::duckdb_scalar_function_set_special_handling(f);
            if T::volatile() {
                ffi::duckdb_scalar_function_set_volatile(f);
            }
            ffi::duckdb_scalar_function_set_init(f, Some(scalar_init::<T>));
            ffi::duckdb_scalar_function_set_function(f, Some(scalar_invoke::<T>));
            ffi::duckdb_add_scalar_function_to_set(set, f);
            ffi::duckdb_destroy_scalar_function(&mut f);
        }
        let state = ffi::duckdb_register_scalar_function_set(con, set);
        ffi::duckdb_destroy_scalar_function_set(&mut set);
        if state != ffi::DuckDBSuccess {
            return Err(Error::Host(format!(
                "could not register scalar function {}",
                T::NAME
            )));
        }
    }
    Ok(())
}

/// An aggregate whose state is a boxed Rust value.
pub trait Aggregate {
    /// Per-group state.
    type State: Default + Send + 'static;
    /// SQL name.
    const NAME: &'static str;
    /// Overloads: parameter types and return type.
    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)>;
    /// Adds the rows of `input`; `states.get(row)` is that row's group.
    fn update(input: &Chunk, states: &mut States<Self::State>) -> Result<()>;
    /// Moves `source` into `target` (parallel aggregation).
    fn combine(source: &mut Self::State, target: &mut Self::State) -> Result<()>;
    /// Writes the group's result at `row` of `output`.
    fn finalize(state: &mut Self::State, output: &mut Output, row: usize) -> Result<()>;
}

pub(super) unsafe extern "C" fn agg_state_size(_: ffi::duckdb_function_info) -> u64 {
    std::mem::size_of::<*mut c_void>() as u64
}

/// Addresses of the aggregate states DuckDB has initialised and not yet
/// destroyed.
///
/// DuckDB 1.5's sorted-aggregate wrapper (`agg(x ORDER BY y)`) calls the
/// C API update with a *constant* state vector — one state for every row —
/// but the C API reads it as a flat array, so entries past the first are
/// garbage and dereferencing them crashes the host. A state address that
/// DuckDB never initialised therefore means "constant vector": all rows
/// belong to the first state.
static LIVE_STATES: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

pub(super) fn live_states() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE_STATES.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) unsafe extern "C" fn agg_init(
    _: ffi::duckdb_function_info,
    state: ffi::duckdb_aggregate_state,
) {
    (state as *mut *mut c_void).write(std::ptr::null_mut());
    live_states()
        .get_or_insert_with(HashSet::new)
        .insert(state as usize);
}

/// The rows' group states of one `update` call.
pub struct States<'a, S> {
    /// One slot per row, or one for every row (constant state vector).
    slots: &'a [ffi::duckdb_aggregate_state],
    _state: std::marker::PhantomData<&'a mut S>,
}

impl<'a, S: Default> States<'a, S> {
    fn new(slots: &'a [ffi::duckdb_aggregate_state]) -> States<'a, S> {
        States {
            slots,
            _state: std::marker::PhantomData,
        }
    }

    fn slot(&self, row: usize) -> ffi::duckdb_aggregate_state {
        if self.slots.len() == 1 {
            self.slots[0]
        } else {
            self.slots[row]
        }
    }

    /// The group state of `row`.
    pub fn get(&mut self, row: usize) -> &mut S {
        let slot = self.slot(row) as *mut *mut S;
        // SAFETY: DuckDB initialised every slot (agg_init); the state is
        // created on first use and borrowed through `self`, one at a time.
        unsafe {
            if (*slot).is_null() {
                *slot = Box::into_raw(Box::default());
            }
            &mut **slot
        }
    }

    /// The positions in `rows` grouped by the rows' states, groups in
    /// order of first appearance, positions ascending.
    pub fn groups(&self, rows: &[usize]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut index: std::collections::HashMap<usize, usize> = Default::default();
        for (i, &row) in rows.iter().enumerate() {
            let g = *index.entry(self.slot(row) as usize).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        groups
    }
}

unsafe fn agg_state<T: Aggregate>(state: ffi::duckdb_aggregate_state) -> *mut T::State {
    let slot = state as *mut *mut T::State;
    if (*slot).is_null() {
        *slot = Box::into_raw(Box::default());
    }
    *slot
}

unsafe extern "C" fn agg_update<T: Aggregate>(
    info: ffi::duckdb_function_info,
    input: ffi::duckdb_data_chunk,
    states: *mut ffi::duckdb_aggregate_state,
) {
    let result = guard(|| {
        let input = Chunk::from_raw(input);
        let rows = input.rows();
        let constant = rows > 1 && {
            let second = *states.add(1) as usize;
            !live_states()
                .as_ref()
                .is_some_and(|live| live.contains(&second))
        };
        let slots = std::slice::from_raw_parts(states, if constant { 1 } else { rows });
        let mut states = States::<T::State>::new(slots);
        T::update(&input, &mut states)
    });
    if let Err(e) = result {
        let msg = message(T::NAME, &e);
        ffi::duckdb_aggregate_function_set_error(info, msg.as_ptr());
    }
}

unsafe extern "C" fn agg_combine<T: Aggregate>(
    info: ffi::duckdb_function_info,
    source: *mut ffi::duckdb_aggregate_state,
    target: *mut ffi::duckdb_aggregate_state,
    count: u64,
) {
    let result = guard(|| {
        for i in 0..count as usize {
            let src = agg_state::<T>(*source.add(i));
            let dst = agg_state::<T>(*target.add(i));
            T::combine(&mut *src, &mut *dst)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        let msg = message(T::NAME, &e);
        ffi::duckdb_aggregate_function_set_error(info, msg.as_ptr());
    }
}

unsafe extern "C" fn agg_finalize<T: Aggregate>(
    info: ffi::duckdb_function_info,
    source: *mut ffi::duckdb_aggregate_state,
    result: ffi::duckdb_vector,
    count: u64,
    offset: u64,
) {
    let outcome = guard(|| {
        let mut output = Output::from_raw(result, (offset + count) as usize);
        for i in 0..count as usize {
            let state = agg_state::<T>(*source.add(i));
            T::finalize(&mut *state, &mut output, offset as usize + i)?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        let msg = message(T::NAME, &e);
        ffi::duckdb_aggregate_function_set_error(info, msg.as_ptr());
    }
}

unsafe extern "C" fn agg_destroy<T: Aggregate>(
    states: *mut ffi::duckdb_aggregate_state,
    count: u64,
) {
    let _ = guard(|| -> Result<()> {
        let mut live = live_states();
        for i in 0..count as usize {
            if let Some(live) = live.as_mut() {
                live.remove(&(*states.add(i) as usize));
            }
            let slot = *states.add(i) as *mut *mut T::State;
            if !(*slot).is_null() {
                drop(Box::from_raw(*slot));
                *slot = std::ptr::null_mut();
            }
        }
        Ok(())
    });
}

/// Registers aggregate `T` with all its overloads on `con`.
pub fn register_aggregate<T: Aggregate>(con: ffi::duckdb_connection) -> Result<()> {
    // SAFETY: plain C API calls on objects we own until destroyed.
    unsafe {
        let name = c_string(T::NAME);
        let mut set = ffi::duckdb_create_aggregate_function_set(name.as_ptr());
        for (params, ret) in T::signatures() {
            let mut f = ffi::duckdb_create_aggregate_function();
            ffi::duckdb_aggregate_function_set_name(f, name.as_ptr());
            for p in &params {
                ffi::duckdb_aggregate_function_add_parameter(f, p.0);
            }
            ffi::duckdb_aggregate_function_set_return_type(f, ret.0);
            ffi::duckdb_aggregate_function_set_special_handling(f);
            ffi::duckdb_aggregate_function_set_functions(
                f,
                Some(agg_state_size),
                Some(agg_init),
                Some(agg_update::<T>),
                Some(agg_combine::<T>),
                Some(agg_finalize::<T>),
            );
            ffi::duckdb_aggregate_function_set_destructor(f, Some(agg_destroy::<T>));
            ffi::duckdb_add_aggregate_function_to_set(set, f);
            ffi::duckdb_destroy_aggregate_function(&mut f);
        }
        let state = ffi::duckdb_register_aggregate_function_set(con, set);
        ffi::duckdb_destroy_aggregate_function_set(&mut set);
        if state != ffi::DuckDBSuccess {
            return Err(Error::Host(format!(
                "could not register aggregate {}",
                T::NAME
            )));
        }
    }
    Ok(())
}

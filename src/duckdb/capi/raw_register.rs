//! The unsafe function traits over raw handles, for the function files not
//! yet on the typed views of [`super::register`].

use std::ffi::c_void;

use libduckdb_sys as ffi;

use super::register::{agg_init, agg_state_size, live_states};
pub use super::register::{next_page, trailing_optional, BindArgs, Bound, CallContext};
use super::{c_string, guard, LogicalType};
use crate::duckdb::corr_struct::with_legacy_overloads;

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
    fn init(bind: &Self::Bind) -> Result<Self::State, String>;
    /// Fills `output` with up to 2048 rows; returns how many (0 ends the scan).
    ///
    /// # Safety
    /// `output` is the live output chunk whose columns are those of `bind`.
    unsafe fn next(
        bind: &Self::Bind,
        state: &mut Self::State,
        output: ffi::duckdb_data_chunk,
    ) -> Result<usize, String>;
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
        let ctx = CallContext::new(context).map_err(String::from)?;
        T::bind(&BindArgs::from_raw(info), &ctx).map_err(String::from)
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
            let msg = c_string(&format!("{}: {e}", T::NAME));
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
            let msg = c_string(&format!("{}: {e}", T::NAME));
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
    match guard(|| T::next(&*bind, &mut *state, output)) {
        Ok(rows) => ffi::duckdb_data_chunk_set_size(output, rows as u64),
        Err(e) => {
            ffi::duckdb_data_chunk_set_size(output, 0);
            let msg = c_string(&format!("{}: {e}", T::NAME));
            ffi::duckdb_function_set_error(info, msg.as_ptr());
        }
    }
}

/// Registers table function `T` on `con`.
pub fn register_table<T: TableFunction>(con: ffi::duckdb_connection) -> Result<(), String> {
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
            return Err(format!("could not register table function {}", T::NAME));
        }
    }
    Ok(())
}

/// A scalar function with one implementation for all its overloads.
pub trait ScalarFunction {
    /// SQL name.
    const NAME: &'static str;
    /// Overloads: parameter types and return type.
    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)>;
    /// Computes `output` for every row of `input` (whose column count tells
    /// the overload). NULL arguments arrive as NULL rows (special handling).
    ///
    /// # Safety
    /// `input` and `output` are DuckDB's live chunk and result vector.
    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
        ctx: &CallContext,
    ) -> Result<(), String>;
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
        CallContext::new(context).map_err(String::from)
    });
    match result {
        Ok(ctx) => {
            let boxed = Box::into_raw(Box::new(ctx)) as *mut c_void;
            ffi::duckdb_scalar_function_init_set_state(info, boxed, Some(drop_box::<CallContext>));
        }
        Err(e) => {
            let msg = c_string(&format!("{}: {e}", T::NAME));
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
            return Err("the host gave no per-thread state".to_string());
        }
        T::invoke(input, output, &*ctx)
    });
    if let Err(e) = result {
        let msg = c_string(&format!("{}: {e}", T::NAME));
        ffi::duckdb_scalar_function_set_error(info, msg.as_ptr());
    }
}

/// Registers scalar function `T` with all its overloads on `con`.
pub fn register_scalar<T: ScalarFunction>(con: ffi::duckdb_connection) -> Result<(), String> {
    // SAFETY: plain C API calls on objects we own until destroyed.
    unsafe {
        let name = c_string(T::NAME);
        let mut set = ffi::duckdb_create_scalar_function_set(name.as_ptr());
        for (params, ret) in with_legacy_overloads(T::signatures()) {
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
            return Err(format!("could not register scalar function {}", T::NAME));
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
    /// Adds the rows of `input`; `state_of(row)` is that row's group state.
    ///
    /// # Safety
    /// `input` is DuckDB's live (flat) chunk; each returned pointer is a
    /// live state, used by one row at a time.
    unsafe fn update(
        input: ffi::duckdb_data_chunk,
        state_of: &mut dyn FnMut(usize) -> *mut Self::State,
    ) -> Result<(), String>;
    /// Moves `source` into `target` (parallel aggregation).
    fn combine(source: &mut Self::State, target: &mut Self::State) -> Result<(), String>;
    /// Writes the group's result at `row` of `output`.
    ///
    /// # Safety
    /// `output` is the live result vector with more than `row` rows.
    unsafe fn finalize(
        state: &mut Self::State,
        output: ffi::duckdb_vector,
        row: usize,
    ) -> Result<(), String>;
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
        let rows = super::old_ffi::chunk_len(input);
        let constant = rows > 1 && {
            let second = *states.add(1) as usize;
            !live_states()
                .as_ref()
                .is_some_and(|live| live.contains(&second))
        };
        let mut state_of = |row: usize| agg_state::<T>(*states.add(if constant { 0 } else { row }));
        T::update(input, &mut state_of)
    });
    if let Err(e) = result {
        let msg = c_string(&format!("{}: {e}", T::NAME));
        ffi::duckdb_aggregate_function_set_error(info, msg.as_ptr());
    }
}

unsafe extern "C" fn agg_combine<T: Aggregate>(
    info: ffi::duckdb_function_info,
    source: *mut ffi::duckdb_aggregate_state,
    target: *mut ffi::duckdb_aggregate_state,
    count: u64,
) {
    let result = guard(|| -> Result<(), String> {
        for i in 0..count as usize {
            let src = agg_state::<T>(*source.add(i));
            let dst = agg_state::<T>(*target.add(i));
            T::combine(&mut *src, &mut *dst)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        let msg = c_string(&format!("{}: {e}", T::NAME));
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
    let outcome = guard(|| -> Result<(), String> {
        for i in 0..count as usize {
            let state = agg_state::<T>(*source.add(i));
            T::finalize(&mut *state, result, offset as usize + i)?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        let msg = c_string(&format!("{}: {e}", T::NAME));
        ffi::duckdb_aggregate_function_set_error(info, msg.as_ptr());
    }
}

unsafe extern "C" fn agg_destroy<T: Aggregate>(
    states: *mut ffi::duckdb_aggregate_state,
    count: u64,
) {
    let _ = guard(|| -> Result<(), String> {
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
pub fn register_aggregate<T: Aggregate>(con: ffi::duckdb_connection) -> Result<(), String> {
    // SAFETY: plain C API calls on objects we own until destroyed.
    unsafe {
        let name = c_string(T::NAME);
        let mut set = ffi::duckdb_create_aggregate_function_set(name.as_ptr());
        for (params, ret) in with_legacy_overloads(T::signatures()) {
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
            return Err(format!("could not register aggregate {}", T::NAME));
        }
    }
    Ok(())
}

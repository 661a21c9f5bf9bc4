//! Typed, bounds-checked writes into DuckDB's result vectors.
//!
//! An [`Output`] knows its vector's kind (read once) and how many rows it
//! may write; writing a value of another type or past the end is an
//! internal error instead of a stray write. Growing a list and copying a
//! string go through `api_guard`, so DuckDB's out-of-memory exception
//! becomes an error rather than unwinding into Rust.

use std::marker::PhantomData;

use libduckdb_sys as ffi;

use super::api_guard;
use super::types::{Kind, LogicalType, Plain};
use crate::duckdb::error::{Error, Result};

/// A writable result vector of `capacity` rows.
pub struct Output<'a> {
    raw: ffi::duckdb_vector,
    capacity: usize,
    kind: Kind,
    _life: PhantomData<&'a mut ()>,
}

impl<'a> Output<'a> {
    /// # Safety
    /// `raw` must be a live writable vector with at least `capacity` rows,
    /// not written through another `Output` while this one lives.
    pub(super) unsafe fn from_raw(raw: ffi::duckdb_vector, capacity: usize) -> Output<'a> {
        let mut ty = ffi::duckdb_vector_get_column_type(raw);
        let kind = Kind::of_id(ffi::duckdb_get_type_id(ty));
        ffi::duckdb_destroy_logical_type(&mut ty);
        Output {
            raw,
            capacity,
            kind,
            _life: PhantomData,
        }
    }

    /// The vector's logical type.
    pub fn logical_type(&self) -> LogicalType {
        // SAFETY: the vector is live; DuckDB returns an owned type.
        LogicalType(unsafe { ffi::duckdb_vector_get_column_type(self.raw) })
    }

    fn check(&self, row: usize, want: Kind, what: &str) -> Result<()> {
        if self.kind != want {
            return Err(Error::internal(format!(
                "{what} written into a {:?} vector",
                self.kind
            )));
        }
        if row >= self.capacity {
            return Err(Error::internal(format!(
                "row {row} written into a vector of {} rows",
                self.capacity
            )));
        }
        Ok(())
    }

    /// Marks `row` NULL.
    pub fn set_null(&mut self, row: usize) -> Result<()> {
        if row >= self.capacity {
            return Err(Error::internal(format!(
                "NULL written at row {row} of a vector of {} rows",
                self.capacity
            )));
        }
        // SAFETY: a live writable vector; `row` is within it.
        unsafe {
            ffi::duckdb_vector_ensure_validity_writable(self.raw);
            let validity = ffi::duckdb_vector_get_validity(self.raw);
            ffi::duckdb_validity_set_row_invalid(validity, row as u64);
        }
        Ok(())
    }

    /// Writes a plain value at `row`.
    pub fn set_value<T: Plain>(&mut self, row: usize, value: T) -> Result<()> {
        self.check(row, T::KIND, std::any::type_name::<T>())?;
        // SAFETY: the vector holds values of `T` (checked) and `row` is
        // within its capacity.
        unsafe {
            let data = ffi::duckdb_vector_get_data(self.raw) as *mut T;
            data.add(row).write(value);
        }
        Ok(())
    }

    /// Writes text at `row` of a VARCHAR vector.
    pub fn set_str(&mut self, row: usize, text: &str) -> Result<()> {
        self.check(row, Kind::Varchar, "text")?;
        // SAFETY: a live VARCHAR vector; `row` is within it.
        unsafe { api_guard::assign_bytes(self.raw, row, text.as_bytes()) }.map_err(Error::Host)
    }

    /// Writes bytes at `row` of a BLOB vector.
    pub fn set_blob(&mut self, row: usize, bytes: &[u8]) -> Result<()> {
        self.check(row, Kind::Blob, "a BLOB")?;
        // SAFETY: a live BLOB vector; `row` is within it.
        unsafe { api_guard::assign_bytes(self.raw, row, bytes) }.map_err(Error::Host)
    }

    /// Makes `row` of a LIST vector a list of `len` new elements; returns
    /// the child vector and the position of the first new element in it.
    pub fn append_list(&mut self, row: usize, len: usize) -> Result<(Output<'_>, usize)> {
        self.check(row, Kind::List, "a list")?;
        // SAFETY: a live LIST vector; `row` is within it; the child holds
        // `offset + len` rows once resized, and is borrowed through `self`.
        unsafe {
            let offset = ffi::duckdb_list_vector_get_size(self.raw) as usize;
            let size = offset
                .checked_add(len)
                .ok_or_else(|| Error::internal("list size overflows"))?;
            api_guard::list_resize(self.raw, size).map_err(Error::Host)?;
            let entries = ffi::duckdb_vector_get_data(self.raw) as *mut ffi::duckdb_list_entry;
            entries.add(row).write(ffi::duckdb_list_entry {
                offset: offset as u64,
                length: len as u64,
            });
            let child = Output::from_raw(ffi::duckdb_list_vector_get_child(self.raw), size);
            Ok((child, offset))
        }
    }

    /// Elements already in a LIST vector's child.
    pub fn list_len(&self) -> Result<usize> {
        if self.kind != Kind::List {
            return Err(Error::internal("list size of a non-LIST vector"));
        }
        // SAFETY: a live LIST vector.
        Ok(unsafe { ffi::duckdb_list_vector_get_size(self.raw) } as usize)
    }

    /// Reserves room for `capacity` elements in a LIST vector's child, so
    /// that many appends do not each reallocate.
    pub fn reserve_list(&mut self, capacity: usize) -> Result<()> {
        if self.kind != Kind::List {
            return Err(Error::internal("reserve on a non-LIST vector"));
        }
        // SAFETY: a live LIST vector.
        unsafe { api_guard::list_reserve(self.raw, capacity) }.map_err(Error::Host)
    }

    /// Writes `values` as the list at `row` (`FLOAT[]`: f32, `DOUBLE[]`:
    /// f64, `BIGINT[]`: i64).
    pub fn set_list<T: Plain>(&mut self, row: usize, values: &[T]) -> Result<()> {
        let (child, offset) = self.append_list(row, values.len())?;
        if child.kind != T::KIND {
            return Err(Error::internal(format!(
                "a list of {} written into a list of {:?}",
                std::any::type_name::<T>(),
                child.kind
            )));
        }
        // SAFETY: the child holds values of `T` (checked) and has room for
        // `offset + values.len()` of them (just resized).
        unsafe {
            let data = ffi::duckdb_vector_get_data(child.raw) as *mut T;
            std::ptr::copy_nonoverlapping(values.as_ptr(), data.add(offset), values.len());
        }
        Ok(())
    }

    /// Writes `values` as the list at `row` of a `VARCHAR[]` vector.
    pub fn set_str_list<S: AsRef<str>>(&mut self, row: usize, values: &[S]) -> Result<()> {
        let (mut child, offset) = self.append_list(row, values.len())?;
        for (i, v) in values.iter().enumerate() {
            child.set_str(offset + i, v.as_ref())?;
        }
        Ok(())
    }

    /// Every field of a STRUCT vector, each writable on its own.
    pub fn fields(&mut self) -> Result<Vec<Output<'_>>> {
        if self.kind != Kind::Struct {
            return Err(Error::internal("fields of a non-STRUCT vector"));
        }
        let count = self.logical_type().field_names().len();
        // SAFETY: a live STRUCT vector; each field is a distinct vector of
        // this vector's rows, borrowed through `self`.
        Ok((0..count)
            .map(|i| unsafe {
                Output::from_raw(
                    ffi::duckdb_struct_vector_get_child(self.raw, i as u64),
                    self.capacity,
                )
            })
            .collect())
    }

    /// Writes `values[i]` into field `i` at `row` of a STRUCT vector whose
    /// fields are all of type `T`.
    pub fn set_fields<T: Plain>(&mut self, row: usize, values: &[T]) -> Result<()> {
        let mut fields = self.fields()?;
        if fields.len() != values.len() {
            return Err(Error::internal(format!(
                "{} values for a STRUCT of {} fields",
                values.len(),
                fields.len()
            )));
        }
        for (field, &value) in fields.iter_mut().zip(values) {
            field.set_value(row, value)?;
        }
        Ok(())
    }
}

/// The output chunk of a table function.
pub struct OutputChunk<'a> {
    raw: ffi::duckdb_data_chunk,
    _life: PhantomData<&'a mut ()>,
}

impl<'a> OutputChunk<'a> {
    /// # Safety
    /// `raw` must be the live output chunk of a table function scan.
    pub(super) unsafe fn from_raw(raw: ffi::duckdb_data_chunk) -> OutputChunk<'a> {
        OutputChunk {
            raw,
            _life: PhantomData,
        }
    }

    /// Rows one call may write.
    pub fn capacity(&self) -> usize {
        // SAFETY: no preconditions.
        unsafe { ffi::duckdb_vector_size() as usize }
    }

    /// Every result column, each writable on its own.
    pub fn columns(&mut self) -> Vec<Output<'_>> {
        // SAFETY: a live chunk; each column is a distinct vector.
        unsafe {
            let columns = ffi::duckdb_data_chunk_get_column_count(self.raw) as usize;
            (0..columns)
                .map(|i| {
                    Output::from_raw(
                        ffi::duckdb_data_chunk_get_vector(self.raw, i as u64),
                        ffi::duckdb_vector_size() as usize,
                    )
                })
                .collect()
        }
    }
}

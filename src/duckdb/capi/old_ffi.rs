//! Small safe-ish helpers over DuckDB's C API vectors, types and values.
//!
//! duckdb-rs has no aggregate wrapper and its scalar wrapper hides the bind
//! and per-thread hooks we need, so every SQL function here is registered
//! through the raw C API; these helpers keep the `unsafe` in one place:
//! owned logical types, reading strings and `FLOAT[]` lists out of flat
//! vectors (DuckDB flattens C API inputs), appending lists to result
//! vectors, and turning panics into errors before they reach C.

use libduckdb_sys as ffi;

use super::api_guard;

pub use super::types::{LogicalType, TypeFn};
pub use super::value::Value;
pub use super::{c_string, guard};

/// Number of rows in a data chunk.
///
/// # Safety
/// `chunk` must be a live data chunk.
pub unsafe fn chunk_len(chunk: ffi::duckdb_data_chunk) -> usize {
    ffi::duckdb_data_chunk_get_size(chunk) as usize
}

/// Column `index` of a data chunk.
///
/// # Safety
/// `chunk` must be live and have more than `index` columns.
pub unsafe fn column(chunk: ffi::duckdb_data_chunk, index: usize) -> ffi::duckdb_vector {
    ffi::duckdb_data_chunk_get_vector(chunk, index as u64)
}

/// Number of columns in a data chunk.
///
/// # Safety
/// `chunk` must be a live data chunk.
pub unsafe fn column_count(chunk: ffi::duckdb_data_chunk) -> usize {
    ffi::duckdb_data_chunk_get_column_count(chunk) as usize
}

/// Read access to a flat vector's validity mask.
#[derive(Clone, Copy)]
pub struct Validity(*mut u64);

impl Validity {
    /// The mask of `vector` (all valid when DuckDB has none).
    ///
    /// # Safety
    /// `vector` must be a live flat vector.
    pub unsafe fn of(vector: ffi::duckdb_vector) -> Validity {
        Validity(ffi::duckdb_vector_get_validity(vector))
    }
    /// Whether `row` holds a value (is not NULL).
    pub fn is_valid(&self, row: usize) -> bool {
        if self.0.is_null() {
            return true;
        }
        // SAFETY: the mask covers every row of its vector.
        unsafe { (*self.0.add(row / 64) >> (row % 64)) & 1 == 1 }
    }

    /// The first NULL row in `start..end`, testing 64 rows per mask word
    /// where it can (a 200,000-value list is 3,000 words, not 200,000 bits).
    pub fn first_invalid(&self, start: usize, end: usize) -> Option<usize> {
        if self.0.is_null() {
            return None;
        }
        let mut i = start;
        while i < end {
            // SAFETY: the mask covers every row of its vector.
            let word = unsafe { *self.0.add(i / 64) };
            if i.is_multiple_of(64) && end - i >= 64 {
                if word != u64::MAX {
                    return Some(i + (!word).trailing_zeros() as usize);
                }
                i += 64;
            } else {
                if (word >> (i % 64)) & 1 == 0 {
                    return Some(i);
                }
                i += 1;
            }
        }
        None
    }
}

/// The string at `row` of a flat VARCHAR vector.
///
/// # Safety
/// `vector` must be a live flat VARCHAR vector with more than `row` rows,
/// and the row must be valid; the result borrows the vector's memory.
pub unsafe fn str_at<'a>(vector: ffi::duckdb_vector, row: usize) -> std::borrow::Cow<'a, str> {
    String::from_utf8_lossy(bytes_at(vector, row))
}

/// The bytes at `row` of a flat VARCHAR or BLOB vector.
///
/// # Safety
/// As for [`str_at`].
pub unsafe fn bytes_at<'a>(vector: ffi::duckdb_vector, row: usize) -> &'a [u8] {
    let base = ffi::duckdb_vector_get_data(vector) as *const u8;
    let entry = base.add(row * 16);
    let len = (entry as *const u32).read_unaligned() as usize;
    let bytes: &[u8] = if len <= 12 {
        std::slice::from_raw_parts(entry.add(4), len)
    } else {
        let ptr = (entry.add(8) as *const *const u8).read_unaligned();
        std::slice::from_raw_parts(ptr, len)
    };
    bytes
}

/// The list entries (offset, length) of a flat LIST vector.
///
/// # Safety
/// `vector` must be a live flat LIST vector.
pub unsafe fn list_entries<'a>(
    vector: ffi::duckdb_vector,
    rows: usize,
) -> &'a [ffi::duckdb_list_entry] {
    let data = ffi::duckdb_vector_get_data(vector) as *const ffi::duckdb_list_entry;
    if rows == 0 || data.is_null() {
        return &[];
    }
    std::slice::from_raw_parts(data, rows)
}

/// Reads `FLOAT[]` values out of a flat list vector.
pub struct FloatLists<'a> {
    entries: &'a [ffi::duckdb_list_entry],
    validity: Validity,
    values: *const f32,
    value_validity: Validity,
}

impl<'a> FloatLists<'a> {
    /// Wraps a flat `FLOAT[]` vector of `rows` rows.
    ///
    /// # Safety
    /// `vector` must be a live flat `FLOAT[]` vector that outlives `'a`.
    pub unsafe fn new(vector: ffi::duckdb_vector, rows: usize) -> FloatLists<'a> {
        let child = ffi::duckdb_list_vector_get_child(vector);
        FloatLists {
            entries: list_entries(vector, rows),
            validity: Validity::of(vector),
            values: ffi::duckdb_vector_get_data(child) as *const f32,
            value_validity: Validity::of(child),
        }
    }

    /// The list at `row`: `Ok(None)` for NULL, an error naming the position
    /// of a NULL element.
    pub fn get(&self, row: usize) -> Result<Option<&'a [f32]>, String> {
        if !self.validity.is_valid(row) {
            return Ok(None);
        }
        let entry = self.entries[row];
        let (offset, len) = (entry.offset as usize, entry.length as usize);
        if let Some(bad) = self.value_validity.first_invalid(offset, offset + len) {
            return Err(format!("element {} of the list is NULL", bad - offset + 1));
        }
        if len == 0 {
            return Ok(Some(&[]));
        }
        // SAFETY: the entry lies within the child vector.
        Ok(Some(unsafe {
            std::slice::from_raw_parts(self.values.add(offset), len)
        }))
    }
}

/// Marks `row` of an output vector as NULL.
///
/// # Safety
/// `vector` must be a live writable vector with more than `row` rows.
pub unsafe fn set_null(vector: ffi::duckdb_vector, row: usize) {
    ffi::duckdb_vector_ensure_validity_writable(vector);
    let validity = ffi::duckdb_vector_get_validity(vector);
    ffi::duckdb_validity_set_row_invalid(validity, row as u64);
}

/// Writes a string into `row` of a VARCHAR output vector.
///
/// # Safety
/// `vector` must be a live writable VARCHAR vector with more than `row` rows.
pub unsafe fn set_str(vector: ffi::duckdb_vector, row: usize, text: &str) -> Result<(), String> {
    api_guard::assign_bytes(vector, row, text.as_bytes())
}

/// Writes bytes into `row` of a BLOB output vector.
///
/// # Safety
/// `vector` must be a live writable BLOB vector with more than `row` rows.
pub unsafe fn set_blob(vector: ffi::duckdb_vector, row: usize, bytes: &[u8]) -> Result<(), String> {
    api_guard::assign_bytes(vector, row, bytes)
}

/// Writes a plain value (number) into `row` of a fixed-width output vector.
///
/// # Safety
/// `vector` must be a live writable vector of type `T` with more than `row` rows.
pub unsafe fn set_value<T: Copy>(vector: ffi::duckdb_vector, row: usize, value: T) {
    let data = ffi::duckdb_vector_get_data(vector) as *mut T;
    data.add(row).write(value);
}

/// Makes `row` of a LIST output vector a list of `len` new elements and
/// returns the child vector and the offset of the first new element.
///
/// # Safety
/// `vector` must be a live writable LIST vector with more than `row` rows.
pub unsafe fn append_list(
    vector: ffi::duckdb_vector,
    row: usize,
    len: usize,
) -> Result<(ffi::duckdb_vector, usize), String> {
    let offset = ffi::duckdb_list_vector_get_size(vector) as usize;
    api_guard::list_resize(vector, offset + len)?;
    let entries = ffi::duckdb_vector_get_data(vector) as *mut ffi::duckdb_list_entry;
    entries.add(row).write(ffi::duckdb_list_entry {
        offset: offset as u64,
        length: len as u64,
    });
    Ok((ffi::duckdb_list_vector_get_child(vector), offset))
}

/// Writes `values` as the list at `row` of a list output vector whose
/// elements are plain values of type `T` (`FLOAT[]`: f32, `DOUBLE[]`: f64,
/// `BIGINT[]`: i64).
///
/// # Safety
/// `vector` must be a live writable list vector of `T` with more than `row` rows.
pub unsafe fn set_list<T: Copy>(
    vector: ffi::duckdb_vector,
    row: usize,
    values: &[T],
) -> Result<(), String> {
    let (child, offset) = append_list(vector, row, values.len())?;
    let data = ffi::duckdb_vector_get_data(child) as *mut T;
    std::ptr::copy_nonoverlapping(values.as_ptr(), data.add(offset), values.len());
    Ok(())
}

/// Writes `values` as the list at `row` of a `VARCHAR[]` output vector.
///
/// # Safety
/// `vector` must be a live writable `VARCHAR[]` vector with more than `row` rows.
pub unsafe fn set_str_list<S: AsRef<str>>(
    vector: ffi::duckdb_vector,
    row: usize,
    values: &[S],
) -> Result<(), String> {
    let (child, offset) = append_list(vector, row, values.len())?;
    for (i, v) in values.iter().enumerate() {
        set_str(child, offset + i, v.as_ref())?;
    }
    Ok(())
}

/// Child `index` of a STRUCT vector.
///
/// # Safety
/// `vector` must be a live STRUCT vector with more than `index` fields.
pub unsafe fn struct_child(vector: ffi::duckdb_vector, index: usize) -> ffi::duckdb_vector {
    ffi::duckdb_struct_vector_get_child(vector, index as u64)
}

/// The `VARCHAR[]` at `row` of a flat list vector: `Ok(None)` for NULL, an
/// error for a NULL element.
///
/// # Safety
/// `vector` must be a live flat `VARCHAR[]` vector with `rows` rows.
pub unsafe fn str_list_at(
    vector: ffi::duckdb_vector,
    rows: usize,
    row: usize,
) -> Result<Option<Vec<String>>, String> {
    if !Validity::of(vector).is_valid(row) {
        return Ok(None);
    }
    let entry = list_entries(vector, rows)[row];
    let child = ffi::duckdb_list_vector_get_child(vector);
    let child_validity = Validity::of(child);
    let mut out = Vec::with_capacity(entry.length as usize);
    for i in entry.offset as usize..(entry.offset + entry.length) as usize {
        if !child_validity.is_valid(i) {
            return Err(format!(
                "element {} of the list is NULL",
                i - entry.offset as usize + 1
            ));
        }
        out.push(str_at(child, i).into_owned());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::Validity;

    #[test]
    fn first_invalid_finds_the_first_null_at_any_offset() {
        let mut mask = vec![u64::MAX; 5];
        let v = Validity(mask.as_mut_ptr());
        assert_eq!(v.first_invalid(0, 320), None);
        for bad in [0usize, 5, 63, 64, 130, 319] {
            let mut m = vec![u64::MAX; 5];
            m[bad / 64] &= !(1u64 << (bad % 64));
            let v = Validity(m.as_mut_ptr());
            for start in [0usize, 3, 64, 65] {
                let want = (bad >= start && bad < 300).then_some(bad);
                assert_eq!(v.first_invalid(start, 300), want, "bad {bad} start {start}");
            }
        }
        assert_eq!(Validity(std::ptr::null_mut()).first_invalid(0, 1000), None);
    }
}

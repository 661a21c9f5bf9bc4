//! Read-only, typed views of the chunks DuckDB hands a function.
//!
//! DuckDB flattens every C API input, so a column is an array of values
//! (or of list entries / string headers) plus a validity mask. A view
//! checks the column's type once when it is made and every row and list
//! range against the vector's length when it is read, so the function
//! files read their arguments without `unsafe` and a wrong index is an
//! error (a caught panic), not a stray read.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Range;

use libduckdb_sys as ffi;

use super::types::{Kind, LogicalType, Plain};
use crate::duckdb::error::{Error, Result};

/// One chunk of rows DuckDB passed in.
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    raw: ffi::duckdb_data_chunk,
    rows: usize,
    columns: usize,
    _life: PhantomData<&'a ()>,
}

impl<'a> Chunk<'a> {
    /// # Safety
    /// `raw` must be a live, flattened data chunk for `'a`.
    pub(super) unsafe fn from_raw(raw: ffi::duckdb_data_chunk) -> Chunk<'a> {
        Chunk {
            raw,
            rows: ffi::duckdb_data_chunk_get_size(raw) as usize,
            columns: ffi::duckdb_data_chunk_get_column_count(raw) as usize,
            _life: PhantomData,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (which overload was called).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Column `index`; an internal error past the last.
    pub fn column(&self, index: usize) -> Result<Column<'a>> {
        self.optional(index)
            .ok_or_else(|| Error::internal(format!("the chunk has no column {}", index + 1)))
    }

    /// Column `index` if the call has it (trailing optional arguments).
    pub fn optional(&self, index: usize) -> Option<Column<'a>> {
        // SAFETY: the index is below the column count of a live chunk; the
        // vector lives as long as the chunk.
        (index < self.columns).then(|| unsafe {
            Column::from_raw(
                ffi::duckdb_data_chunk_get_vector(self.raw, index as u64),
                self.rows,
            )
        })
    }
}

/// A flat vector of `rows` rows, not yet read as any type.
#[derive(Clone, Copy)]
pub struct Column<'a> {
    raw: ffi::duckdb_vector,
    rows: usize,
    validity: Validity<'a>,
}

impl<'a> Column<'a> {
    /// # Safety
    /// `raw` must be a live flat vector of at least `rows` rows for `'a`.
    pub(super) unsafe fn from_raw(raw: ffi::duckdb_vector, rows: usize) -> Column<'a> {
        Column {
            raw,
            rows,
            validity: Validity::of(raw, rows),
        }
    }

    /// Whether `row` holds a value (is not NULL); false past the end.
    pub fn is_valid(&self, row: usize) -> bool {
        row < self.rows && self.validity.is_valid(row)
    }

    /// The column's logical type.
    pub fn logical_type(&self) -> LogicalType {
        // SAFETY: the vector is live; DuckDB returns an owned type.
        LogicalType(unsafe { ffi::duckdb_vector_get_column_type(self.raw) })
    }

    /// What the column holds.
    pub fn kind(&self) -> Kind {
        self.logical_type().kind()
    }

    fn expect(&self, want: Kind, what: &str) -> Result<()> {
        let got = self.kind();
        if got == want {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "a column read as {what} holds {got:?}"
            )))
        }
    }

    /// The column as plain values of `T`.
    pub fn values<T: Plain>(&self) -> Result<Values<'a, T>> {
        self.expect(T::KIND, std::any::type_name::<T>())?;
        // SAFETY: the vector holds `rows` values of `T` (type checked).
        let data = unsafe { ffi::duckdb_vector_get_data(self.raw) as *const T };
        let data = if self.rows == 0 || data.is_null() {
            &[]
        } else {
            // SAFETY: as above; the data lives as long as the chunk.
            unsafe { std::slice::from_raw_parts(data, self.rows) }
        };
        Ok(Values {
            data,
            validity: self.validity,
        })
    }

    /// The column as VARCHAR or BLOB values.
    pub fn strings(&self) -> Result<Strings<'a>> {
        let kind = self.kind();
        if kind != Kind::Varchar && kind != Kind::Blob {
            return Err(Error::internal(format!(
                "a column read as text holds {kind:?}"
            )));
        }
        // SAFETY: the vector holds `rows` 16-byte string headers.
        let data = unsafe { ffi::duckdb_vector_get_data(self.raw) as *const u8 };
        Ok(Strings {
            data,
            rows: if data.is_null() { 0 } else { self.rows },
            validity: self.validity,
            _life: PhantomData,
        })
    }

    /// The column as lists: each row's range in the [`Lists::child`]. A
    /// MAP is a list of `STRUCT(key, value)` and reads the same way.
    pub fn lists(&self) -> Result<Lists<'a>> {
        let kind = self.kind();
        if kind != Kind::List && kind != Kind::Map {
            return Err(Error::internal(format!(
                "a column read as LIST holds {kind:?}"
            )));
        }
        // SAFETY: a live LIST vector: `rows` entries, a child vector of
        // `list size` rows.
        unsafe {
            let data = ffi::duckdb_vector_get_data(self.raw) as *const ffi::duckdb_list_entry;
            let entries = if self.rows == 0 || data.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(data, self.rows)
            };
            let size = ffi::duckdb_list_vector_get_size(self.raw) as usize;
            let child = Column::from_raw(ffi::duckdb_list_vector_get_child(self.raw), size);
            Ok(Lists {
                entries,
                validity: self.validity,
                child,
            })
        }
    }

    /// The fields of a STRUCT column, in declaration order.
    pub fn fields(&self) -> Result<Vec<Column<'a>>> {
        Ok(self.named_fields()?.into_iter().map(|(_, c)| c).collect())
    }

    /// The fields of a STRUCT column with their names, in declaration
    /// order.
    pub fn named_fields(&self) -> Result<Vec<(String, Column<'a>)>> {
        let ty = self.logical_type();
        if ty.kind() != Kind::Struct {
            return Err(Error::internal(format!(
                "a column read as STRUCT holds {:?}",
                ty.kind()
            )));
        }
        // SAFETY: a live STRUCT vector with a child of `rows` rows per
        // field name.
        Ok(ty
            .field_names()
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let child = unsafe {
                    Column::from_raw(
                        ffi::duckdb_struct_vector_get_child(self.raw, i as u64),
                        self.rows,
                    )
                };
                (name, child)
            })
            .collect())
    }

    /// The column as lists of plain values (`FLOAT[]`, `DOUBLE[]`).
    pub fn lists_of<T: Plain>(&self) -> Result<ListsOf<'a, T>> {
        let lists = self.lists()?;
        let values = lists.child.values::<T>()?;
        Ok(ListsOf { lists, values })
    }

    /// The column as `FLOAT[]` lists.
    pub fn float_lists(&self) -> Result<FloatLists<'a>> {
        self.lists_of::<f32>()
    }
}

/// A flat vector's validity mask over its rows.
#[derive(Clone, Copy)]
pub struct Validity<'a> {
    /// `None`: every row is valid.
    words: Option<&'a [u64]>,
}

impl<'a> Validity<'a> {
    /// # Safety
    /// `vector` must be a live flat vector of at least `rows` rows.
    unsafe fn of(vector: ffi::duckdb_vector, rows: usize) -> Validity<'a> {
        let mask = ffi::duckdb_vector_get_validity(vector);
        Validity {
            words: (!mask.is_null())
                .then(|| std::slice::from_raw_parts(mask as *const u64, rows.div_ceil(64))),
        }
    }

    /// Whether `row` holds a value.
    pub fn is_valid(&self, row: usize) -> bool {
        match self.words {
            None => true,
            Some(words) => words
                .get(row / 64)
                .is_some_and(|w| (w >> (row % 64)) & 1 == 1),
        }
    }

    /// The first NULL row in `range`, testing 64 rows per mask word where
    /// it can (a 200,000-value list is 3,000 words, not 200,000 bits).
    pub fn first_invalid(&self, range: Range<usize>) -> Option<usize> {
        let words = self.words?;
        let mut i = range.start;
        while i < range.end {
            let word = words.get(i / 64).copied().unwrap_or(0);
            if i.is_multiple_of(64) && range.end - i >= 64 {
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

/// Plain values of `T`.
#[derive(Clone, Copy)]
pub struct Values<'a, T> {
    data: &'a [T],
    validity: Validity<'a>,
}

impl<'a, T: Copy> Values<'a, T> {
    /// The value at `row`, `None` for NULL.
    pub fn get(&self, row: usize) -> Option<T> {
        if self.validity.is_valid(row) {
            self.data.get(row).copied()
        } else {
            None
        }
    }

    /// The values of `range` (rows of a list's child): `Err(row)` names
    /// the first NULL.
    pub fn slice(&self, range: Range<usize>) -> std::result::Result<&'a [T], usize> {
        if let Some(bad) = self.validity.first_invalid(range.clone()) {
            return Err(bad);
        }
        self.data.get(range.clone()).ok_or(range.end)
    }
}

/// VARCHAR or BLOB values.
#[derive(Clone, Copy)]
pub struct Strings<'a> {
    data: *const u8,
    rows: usize,
    validity: Validity<'a>,
    _life: PhantomData<&'a ()>,
}

impl<'a> Strings<'a> {
    /// The bytes at `row`, `None` for NULL (or past the end).
    pub fn bytes(&self, row: usize) -> Option<&'a [u8]> {
        if row >= self.rows || !self.validity.is_valid(row) {
            return None;
        }
        // SAFETY: `row` is within the vector's 16-byte string headers: a
        // length, then up to 12 inlined bytes or a prefix and a pointer to
        // `length` bytes that live as long as the chunk.
        unsafe {
            let entry = self.data.add(row * 16);
            let len = (entry as *const u32).read_unaligned() as usize;
            Some(if len <= 12 {
                std::slice::from_raw_parts(entry.add(4), len)
            } else {
                let ptr = (entry.add(8) as *const *const u8).read_unaligned();
                std::slice::from_raw_parts(ptr, len)
            })
        }
    }

    /// The text at `row` (invalid UTF-8 replaced), `None` for NULL.
    pub fn text(&self, row: usize) -> Option<Cow<'a, str>> {
        self.bytes(row).map(String::from_utf8_lossy)
    }
}

/// LIST values: each row's range of rows in `child`.
#[derive(Clone, Copy)]
pub struct Lists<'a> {
    entries: &'a [ffi::duckdb_list_entry],
    validity: Validity<'a>,
    /// The flat vector of every list's elements.
    pub child: Column<'a>,
}

impl<'a> Lists<'a> {
    /// The range of `child` rows of the list at `row`, `None` for NULL;
    /// an internal error if DuckDB's entry points past the child.
    pub fn range(&self, row: usize) -> Result<Option<Range<usize>>> {
        if !self.validity.is_valid(row) {
            return Ok(None);
        }
        let Some(entry) = self.entries.get(row) else {
            return Ok(None);
        };
        let start = entry.offset as usize;
        let end = start.saturating_add(entry.length as usize);
        if end > self.child.rows {
            return Err(Error::internal(format!(
                "list entry {start}..{end} past its {} elements",
                self.child.rows
            )));
        }
        Ok(Some(start..end))
    }

    /// The `VARCHAR[]` at `row` as owned strings: `None` for NULL, an
    /// error naming the position of a NULL element.
    pub fn strings_at(&self, row: usize) -> Result<Option<Vec<String>>> {
        let Some(range) = self.range(row)? else {
            return Ok(None);
        };
        let text = self.child.strings()?;
        let mut out = Vec::with_capacity(range.len());
        for i in range.clone() {
            let value = text.text(i).ok_or_else(|| null_element(i - range.start))?;
            out.push(value.into_owned());
        }
        Ok(Some(out))
    }
}

/// The error for a NULL at 0-based position `index` of a list.
pub fn null_element(index: usize) -> Error {
    Error::invalid(format!("element {} of the list is NULL", index + 1))
}

/// Lists of plain values of `T`.
#[derive(Clone, Copy)]
pub struct ListsOf<'a, T> {
    lists: Lists<'a>,
    values: Values<'a, T>,
}

/// `FLOAT[]` values.
pub type FloatLists<'a> = ListsOf<'a, f32>;

impl<'a, T: Copy> ListsOf<'a, T> {
    /// The list at `row`: `Ok(None)` for NULL, an error naming the position
    /// of a NULL element.
    pub fn get(&self, row: usize) -> Result<Option<&'a [T]>> {
        let Some(range) = self.lists.range(row)? else {
            return Ok(None);
        };
        let start = range.start;
        self.values
            .slice(range)
            .map(Some)
            .map_err(|bad| null_element(bad - start))
    }
}

#[cfg(test)]
mod tests {
    use super::Validity;

    #[test]
    fn first_invalid_finds_the_first_null_at_any_offset() {
        let all = vec![u64::MAX; 5];
        let v = Validity { words: Some(&all) };
        assert_eq!(v.first_invalid(0..320), None);
        for bad in [0usize, 5, 63, 64, 130, 319] {
            let mut m = vec![u64::MAX; 5];
            m[bad / 64] &= !(1u64 << (bad % 64));
            let v = Validity { words: Some(&m) };
            for start in [0usize, 3, 64, 65] {
                let want = (bad >= start && bad < 300).then_some(bad);
                assert_eq!(v.first_invalid(start..300), want, "bad {bad} start {start}");
            }
        }
        assert_eq!(Validity { words: None }.first_invalid(0..1000), None);
    }

    #[test]
    fn rows_past_the_mask_are_not_valid() {
        let m = vec![u64::MAX; 1];
        let v = Validity { words: Some(&m) };
        assert!(v.is_valid(63));
        assert!(!v.is_valid(64));
    }
}

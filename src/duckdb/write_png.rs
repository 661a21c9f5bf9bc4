//! `write_png(path, png)`: writes a PNG made by the picture functions to a
//! file (creating its folder) and returns the path — the way to get
//! figures out of the DuckDB shell. Refuses bytes that are not a PNG.
//!
//! ```sql
//! SELECT write_png('out/input.png', corr_heatmap(m)) FROM matrices WHERE layer = 'input';
//! ```

use std::path::Path;

use ::duckdb::ffi;

use super::ffi::{bytes_at, chunk_len, column, set_null, set_str, str_at, LogicalType, Validity};
use super::register::ScalarFunction;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The `write_png` scalar function.
pub struct WritePng;

impl ScalarFunction for WritePng {
    const NAME: &'static str = "write_png";

    fn signatures() -> Vec<(Vec<LogicalType>, LogicalType)> {
        vec![(
            vec![LogicalType::varchar(), LogicalType::blob()],
            LogicalType::varchar(),
        )]
    }

    fn volatile() -> bool {
        true
    }

    unsafe fn invoke(
        input: ffi::duckdb_data_chunk,
        output: ffi::duckdb_vector,
    ) -> Result<(), String> {
        let rows = chunk_len(input);
        let (path_vec, png_vec) = (column(input, 0), column(input, 1));
        for row in 0..rows {
            if !Validity::of(png_vec).is_valid(row) {
                set_null(output, row);
                continue;
            }
            if !Validity::of(path_vec).is_valid(row) {
                return Err("path is NULL".into());
            }
            let path = str_at(path_vec, row).into_owned();
            let bytes = bytes_at(png_vec, row);
            if !bytes.starts_with(PNG_SIGNATURE) {
                return Err(format!("the data for '{path}' is not a PNG"));
            }
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create folder '{}': {e}", dir.display()))?;
            }
            std::fs::write(&path, bytes).map_err(|e| format!("cannot write '{path}': {e}"))?;
            set_str(output, row, &path)?;
        }
        Ok(())
    }
}

//! `write_png(path, png)`: writes a PNG made by the picture functions to a
//! file and returns the path — the way to get figures out of the DuckDB
//! shell. The file is written through DuckDB's file system, so its sandbox
//! settings apply; a missing local folder is created when external access
//! is enabled. Only a complete, valid PNG is written: the bytes must decode
//! as a PNG (every chunk's checksum right) and end with its `IEND` chunk.
//!
//! ```sql
//! SELECT write_png('out/input.png', corr_heatmap(m)) FROM matrices WHERE layer = 'input';
//! ```

use std::path::Path;

use super::capi::{CallContext, Chunk, LogicalType, Output, ScalarFunction};
use super::error::{Error, Result};
use layercorr_engine::files::is_local;

/// The last 12 bytes of every PNG: the empty `IEND` chunk and its CRC.
const PNG_END: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";

/// Whether `bytes` are one complete PNG: a decodable image that ends with
/// its `IEND` chunk (nothing appended).
fn check_png(bytes: &[u8]) -> Result<(), String> {
    if !bytes.ends_with(PNG_END) {
        return Err("does not end with a PNG's IEND chunk".into());
    }
    let mut reader =
        ::image::ImageReader::with_format(std::io::Cursor::new(bytes), ::image::ImageFormat::Png);
    let mut limits = ::image::Limits::default();
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    reader.decode().map(|_| ()).map_err(|e| e.to_string())
}

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

    fn invoke(input: &Chunk, output: &mut Output, ctx: &CallContext) -> Result<()> {
        let paths = input.column(0)?.strings()?;
        let pngs = input.column(1)?.strings()?;
        for row in 0..input.rows() {
            let Some(bytes) = pngs.bytes(row) else {
                output.set_null(row)?;
                continue;
            };
            let path = paths
                .text(row)
                .ok_or_else(|| Error::invalid("path is NULL"))?
                .into_owned();
            check_png(bytes).map_err(|e| {
                Error::invalid(format!("the data for '{path}' is not a complete PNG: {e}"))
            })?;
            // Folders are made only where DuckDB may touch files at all;
            // the file itself is then opened through DuckDB's sandbox.
            let folder = Path::new(path.strip_prefix("file://").unwrap_or(&path))
                .parent()
                .filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = folder.filter(|_| is_local(&path) && ctx.settings.external_access) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::invalid(format!("cannot create folder '{}': {e}", dir.display()))
                })?;
            }
            ctx.files()?.write(&path, bytes)?;
            output.set_str(row, &path)?;
        }
        Ok(())
    }
}

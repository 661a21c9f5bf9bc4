//! `layercorr_settings()`: the host settings that bind the extension, as
//! the extension reads them now — `memory_limit` (bytes), `temp_directory`,
//! `enable_external_access`, `layercorr_spill_mb`, `layercorr_kernels`.
//!
//! Aggregates get no client context in DuckDB's C API, so `layer_corr`
//! uses the settings as last read by any layercorr call; this function is
//! such a call, and shows what the aggregates will use.
//!
//! ```sql
//! SET memory_limit = '4GB';
//! FROM layercorr_settings();
//! ```

use super::capi::{
    next_page, BindArgs, Bound, CallContext, LogicalType, OutputChunk, TableFunction,
};
use super::error::{Error, Result};

/// The `layercorr_settings` table function.
pub struct LayercorrSettings;

impl TableFunction for LayercorrSettings {
    type Bind = Vec<(String, String)>;
    type State = usize;
    const NAME: &'static str = "layercorr_settings";

    fn parameters() -> Vec<LogicalType> {
        Vec::new()
    }

    fn bind(_: &BindArgs, ctx: &CallContext) -> Bound<Self::Bind> {
        let s = &ctx.settings;
        let rows = vec![
            ("memory_limit".to_string(), s.memory_limit.to_string()),
            (
                "temp_directory".to_string(),
                s.temp_directory.clone().unwrap_or_default(),
            ),
            (
                "enable_external_access".to_string(),
                s.external_access.to_string(),
            ),
            (
                super::capi::settings::SPILL_MB.to_string(),
                s.spill_mb.map_or("off".to_string(), |mb| mb.to_string()),
            ),
            (
                super::capi::settings::KERNELS.to_string(),
                if s.own_kernels { "layercorr" } else { "tract" }.to_string(),
            ),
        ];
        let columns = vec![
            ("name", LogicalType::varchar()),
            ("value", LogicalType::varchar()),
        ];
        Ok((rows, columns))
    }

    fn init(_: &Self::Bind) -> Result<Self::State> {
        Ok(0)
    }

    fn next(bind: &Self::Bind, next_row: &mut usize, output: &mut OutputChunk) -> Result<usize> {
        let rows = next_page(bind, next_row);
        let mut columns = output.columns();
        let [name, value] = columns.as_mut_slice() else {
            return Err(Error::internal(
                "layercorr_settings output without two columns",
            ));
        };
        for (i, (n, v)) in rows.iter().enumerate() {
            name.set_str(i, n)?;
            value.set_str(i, v)?;
        }
        Ok(rows.len())
    }
}

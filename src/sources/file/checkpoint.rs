//! The checkpoint file: `<data_dir>/<source name>/checkpoints.json`.
//!
//! ```json
//! {"version":1,"files":[{"dev":2049,"ino":1835,"id":"801-72b-1874c0d2a1b","generation":0,
//!   "head_len":1024,"head_crc":3735928559,"offset":40960,"path":"/var/log/app.log",
//!   "seen":1795364890}]}
//! ```
//!
//! `offset` is the end of the acknowledged prefix of the file; `mid_line`
//! (omitted when false-y) records that the offset lies inside a line whose
//! first part was already emitted (`"continue"`) or cut (`"discard"`).
//! Written atomically: temporary file, fsync, rename, fsync of the directory.
//! A file that cannot be parsed or has another version is moved aside to
//! `checkpoints.json.corrupt-<unix seconds>` and the source starts fresh.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::reader::MidLine;

pub(crate) const VERSION: u32 = 1;
pub(crate) const FILE_NAME: &str = "checkpoints.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub dev: u64,
    pub ino: u64,
    pub id: String,
    #[serde(default)]
    pub generation: u32,
    pub head_len: u32,
    pub head_crc: u32,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "MidLine::is_none")]
    pub mid_line: MidLine,
    pub path: PathBuf,
    /// Unix seconds when the file was last seen by a scan.
    pub seen: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    version: u32,
    files: Vec<Entry>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) struct Store {
    dir: PathBuf,
    path: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: PathBuf) -> Self {
        let path = dir.join(FILE_NAME);
        Self { dir, path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the entries; never fails on bad content (see the module docs).
    /// Fails only if the directory cannot be created.
    pub(crate) fn load(&self) -> io::Result<Vec<Entry>> {
        fs::create_dir_all(&self.dir)?;
        let _ = fs::remove_file(self.dir.join(format!("{FILE_NAME}.tmp")));
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e,
                    "cannot read checkpoint file; starting without checkpoints");
                self.move_aside();
                return Ok(Vec::new());
            }
        };
        let problem = match serde_json::from_slice::<VersionOnly>(&bytes) {
            Ok(v) if v.version != VERSION => format!("unknown checkpoint version {}", v.version),
            Ok(_) => match serde_json::from_slice::<Document>(&bytes) {
                Ok(doc) => {
                    tracing::info!(path = %self.path.display(), files = doc.files.len(),
                        "checkpoints recovered");
                    return Ok(doc.files);
                }
                Err(e) => format!("corrupt checkpoint file: {e}"),
            },
            Err(e) => format!("corrupt checkpoint file: {e}"),
        };
        let moved = self.move_aside();
        tracing::error!(path = %self.path.display(), moved_to = ?moved, problem = %problem,
            "checkpoint file unusable; moved aside, starting as if fresh");
        Ok(Vec::new())
    }

    fn move_aside(&self) -> Option<PathBuf> {
        let mut target = self.dir.join(format!("{FILE_NAME}.corrupt-{}", unix_now()));
        let mut n = 1;
        while target.exists() {
            target = self
                .dir
                .join(format!("{FILE_NAME}.corrupt-{}-{n}", unix_now()));
            n += 1;
        }
        match fs::rename(&self.path, &target) {
            Ok(()) => Some(target),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "cannot move the unusable checkpoint file aside; it will be overwritten");
                None
            }
        }
    }

    /// Writes all entries atomically.
    pub(crate) fn save(&self, files: Vec<Entry>) -> io::Result<()> {
        let doc = Document {
            version: VERSION,
            files,
        };
        let bytes = serde_json::to_vec(&doc).map_err(io::Error::other)?;
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64) -> Entry {
        Entry {
            dev: 1,
            ino,
            id: format!("1-{ino:x}"),
            generation: 0,
            head_len: 3,
            head_crc: 7,
            offset: 42,
            mid_line: MidLine::Continue,
            path: PathBuf::from("/x.log"),
            seen: 5,
        }
    }

    #[test]
    fn round_trip_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("src"));
        assert!(store.load().unwrap().is_empty());
        store.save(vec![entry(1), entry(2)]).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
        assert!(!text.contains('\n'), "compact");
        assert_eq!(store.load().unwrap(), vec![entry(1), entry(2)]);
    }

    #[test]
    fn corrupt_and_unknown_versions_are_moved_aside() {
        for content in [
            &b"{\"version\":1,\"files\":[{\"dev\":"[..],
            b"\x00\xff garbage",
            b"{\"version\":99,\"files\":[]}",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::new(dir.path().to_path_buf());
            fs::write(store.path(), content).unwrap();
            assert!(store.load().unwrap().is_empty());
            assert!(!store.path().exists());
            let aside: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("checkpoints.json.corrupt-"))
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(fs::read(dir.path().join(&aside[0])).unwrap(), content);
        }
    }
}

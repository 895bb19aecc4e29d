//! Bounded per-instance log files: when the file passes its limit it is rotated to `.1`
//! (one old file kept), so an instance never fills the cell's disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes one log file may hold before it is rotated.
pub const LOG_FILE_BYTES_MAX: u64 = 1024 * 1024;

pub struct LogFile {
    path: PathBuf,
    inner: Mutex<Option<(File, u64)>>,
}

impl LogFile {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_owned(),
            inner: Mutex::new(Some((f, len))),
        })
    }

    pub fn write(&self, bytes: &[u8]) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        if let Some((_, len)) = guard.as_ref() {
            if len + bytes.len() as u64 > LOG_FILE_BYTES_MAX {
                *guard = None;
                let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
                if let Ok(f) = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .truncate(false)
                    .open(&self.path)
                {
                    *guard = Some((f, 0));
                }
            }
        }
        if let Some((f, len)) = guard.as_mut() {
            if f.write_all(bytes).is_ok() {
                *len += bytes.len() as u64;
            }
        }
    }

    pub fn line(&self, text: &str) {
        self.write(format!("{text}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::create(&dir.path().join("i.log")).unwrap();
        let chunk = vec![b'x'; 400 * 1024];
        for _ in 0..3 {
            log.write(&chunk);
        }
        let cur = std::fs::metadata(dir.path().join("i.log")).unwrap().len();
        let old = std::fs::metadata(dir.path().join("i.log.1")).unwrap().len();
        assert_eq!((cur, old), (400 * 1024, 800 * 1024));
    }
}

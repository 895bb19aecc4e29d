//! Bounded log files for instances and task runs, readable from an exact position.
//!
//! A log is one file holding at most [`LOG_FILE_BYTES_MAX`] bytes. Positions count every byte
//! the process wrote since it started (the stream offset), so a reader that resumes from the
//! position it was given never loses or repeats a byte, even while the file is being written.
//! When the file would pass its limit, the oldest bytes are dropped (it keeps the newest half
//! plus what is being written) and the stream offset of its first byte — its base — is recorded
//! in a side file `<name>.base`; a reader asking for dropped bytes is told how many it missed.
//!
//! Reads of a log that is still being written go through its writer (one lock for both), so a
//! read never sees a file and a base that do not belong together.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Bytes one log file may hold; older output is dropped beyond it.
pub const LOG_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Most bytes one read returns.
pub const LOG_READ_CHUNK_BYTES_MAX: usize = 64 * 1024;

/// What a read found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// where the next read starts
    pub next_offset: u64,
    /// bytes between the asked offset and the oldest byte kept that are gone
    pub dropped_bytes: u64,
}

struct State {
    file: Option<File>,
    /// bytes in the file
    len: u64,
    /// stream offset of the file's first byte
    base: u64,
}

pub struct LogFile {
    path: PathBuf,
    inner: Mutex<State>,
}

/// The logs being written in this process, so that reads go through their writer.
fn live() -> &'static Mutex<HashMap<PathBuf, Weak<LogFile>>> {
    static LIVE: OnceLock<Mutex<HashMap<PathBuf, Weak<LogFile>>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

fn base_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".base");
    PathBuf::from(name)
}

fn read_base(path: &Path) -> u64 {
    std::fs::read_to_string(base_path(path))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

impl LogFile {
    /// Opens (or continues) the log at `path`.
    pub fn create(path: &Path) -> std::io::Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let log = Arc::new(Self {
            path: path.to_owned(),
            inner: Mutex::new(State {
                file: Some(f),
                len,
                base: read_base(path),
            }),
        });
        if let Ok(mut l) = live().lock() {
            l.retain(|_, w| w.strong_count() > 0);
            l.insert(path.to_owned(), Arc::downgrade(&log));
        }
        Ok(log)
    }

    pub fn write(&self, bytes: &[u8]) {
        let Ok(mut st) = self.inner.lock() else {
            return;
        };
        let n = bytes.len() as u64;
        if st.len + n > LOG_FILE_BYTES_MAX {
            if let Err(e) = self.drop_oldest(&mut st, bytes) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not trim a log file");
            }
            return;
        }
        if let Some(f) = st.file.as_mut() {
            if f.write_all(bytes).is_ok() {
                st.len += n;
            }
        }
    }

    pub fn line(&self, text: &str) {
        self.write(format!("{text}\n").as_bytes());
    }

    /// Rewrites the file as its newest half plus `bytes` (or the newest half of `bytes` alone).
    fn drop_oldest(&self, st: &mut State, bytes: &[u8]) -> std::io::Result<()> {
        let half = LOG_FILE_BYTES_MAX / 2;
        let n = bytes.len() as u64;
        let (keep_old, new_part) = if n >= half {
            (0, &bytes[bytes.len() - usize::try_from(half).unwrap_or(bytes.len())..])
        } else {
            ((half - n).min(st.len), bytes)
        };
        let mut kept = vec![0u8; usize::try_from(keep_old).unwrap_or(0)];
        if keep_old > 0 {
            let mut f = File::open(&self.path)?;
            f.seek(SeekFrom::Start(st.len - keep_old))?;
            f.read_exact(&mut kept)?;
        }
        let dropped = st.len - keep_old + (n - new_part.len() as u64);
        let tmp = self.path.with_extension("trim");
        {
            let mut t = File::create(&tmp)?;
            t.write_all(&kept)?;
            t.write_all(new_part)?;
        }
        st.file = None;
        std::fs::rename(&tmp, &self.path)?;
        st.base += dropped;
        std::fs::write(base_path(&self.path), st.base.to_string())?;
        st.len = keep_old + new_part.len() as u64;
        st.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }
}

/// Reads the log at `path` from stream offset `offset` (a missing log reads as empty). A full
/// chunk ends at its last newline when it has one, else at a UTF-8 boundary.
pub fn read(path: &Path, offset: u64) -> std::io::Result<Chunk> {
    let writer = live().lock().ok().and_then(|l| l.get(path).and_then(Weak::upgrade));
    match writer {
        Some(log) => {
            let st = log
                .inner
                .lock()
                .map_err(|_| std::io::Error::other("log lock poisoned"))?;
            read_file(path, st.base, offset)
        }
        None => read_file(path, read_base(path), offset),
    }
}

fn read_file(path: &Path, base: u64, offset: u64) -> std::io::Result<Chunk> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Chunk {
                next_offset: offset,
                ..Default::default()
            })
        }
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let end = base + len;
    let start = offset.clamp(base, end);
    let dropped_bytes = base.saturating_sub(offset);
    f.seek(SeekFrom::Start(start - base))?;
    let want = usize::try_from((end - start).min(LOG_READ_CHUNK_BYTES_MAX as u64)).unwrap_or(0);
    let mut data = vec![0u8; want];
    f.read_exact(&mut data)?;
    if want == LOG_READ_CHUNK_BYTES_MAX && start + (want as u64) < end {
        let cut = match data.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None => match std::str::from_utf8(&data) {
                Ok(_) => data.len(),
                Err(e) => e.valid_up_to().max(1),
            },
        };
        data.truncate(cut);
    }
    Ok(Chunk {
        next_offset: start + data.len() as u64,
        data,
        dropped_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything from `from` by repeated reads, as a client following the tokens does.
    fn read_all(path: &Path, mut from: u64) -> (Vec<u8>, u64, u64) {
        let mut out = Vec::new();
        let mut dropped = 0;
        loop {
            let c = read(path, from).unwrap();
            dropped += c.dropped_bytes;
            if c.data.is_empty() {
                return (out, c.next_offset, dropped);
            }
            out.extend_from_slice(&c.data);
            from = c.next_offset;
        }
    }

    #[test]
    fn positions_are_exact_across_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        assert_eq!(read(&path, 0).unwrap(), Chunk::default(), "no log yet reads as empty");
        let log = LogFile::create(&path).unwrap();
        log.line("one");
        let (a, pos, _) = read_all(&path, 0);
        assert_eq!((a.as_slice(), pos), (&b"one\n"[..], 4));
        log.line("two");
        let (b, pos2, _) = read_all(&path, pos);
        assert_eq!(
            (b.as_slice(), pos2),
            (&b"two\n"[..], 8),
            "resuming adds only what is new"
        );
        assert_eq!(read_all(&path, pos2).0, b"", "and nothing twice");
        drop(log);
        assert_eq!(read_all(&path, 0).0, b"one\ntwo\n", "readable after the writer is gone");
    }

    #[test]
    fn big_logs_drop_their_oldest_bytes_and_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let log = LogFile::create(&path).unwrap();
        let line = |i: u64| format!("{i:09}\n");
        let total_lines = 3 * LOG_FILE_BYTES_MAX / 10;
        let mut from = 0;
        let mut seen = Vec::new();
        for i in 0..total_lines {
            log.write(line(i).as_bytes());
            if i % 40_000 == 0 {
                // A follower reading while it is written.
                let (d, next, dropped) = read_all(&path, from);
                assert_eq!(dropped, 0, "a reader that keeps up loses nothing");
                seen.extend_from_slice(&d);
                from = next;
            }
        }
        let (d, end, _) = read_all(&path, from);
        seen.extend_from_slice(&d);
        let expected: String = (0..total_lines).map(line).collect();
        assert_eq!(end, expected.len() as u64);
        assert!(std::fs::metadata(&path).unwrap().len() <= LOG_FILE_BYTES_MAX);
        // The follower read every byte exactly once...
        assert!(seen == expected.as_bytes(), "the follower's copy differs");
        let (rest, _, dropped) = read_all(&path, 0);
        // ...while a reader from the start is told what was dropped and gets the newest bytes.
        assert!(dropped > 0);
        assert_eq!(dropped + rest.len() as u64, end);
        assert!(expected.as_bytes().ends_with(&rest));
        drop(log);
        let again = LogFile::create(&path).unwrap();
        again.line("after restart");
        let (tail, next, _) = read_all(&path, end);
        assert_eq!(
            (tail.as_slice(), next),
            (&b"after restart\n"[..], end + 14),
            "the base survives a reopen"
        );
    }
}

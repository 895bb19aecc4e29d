//! The one `sled::Db` of the process, and what makes a write on it durable.
//!
//! sled 0.34's `flush` ends in `sync_file_range` on Linux, which flushes neither the device cache
//! nor file metadata; its only real `fsync` is a background flusher every 500 ms. So "durable"
//! here means: `flush_async` (sled has written its buffers to the data file), then an
//! `fdatasync` of that data file, and an `fsync` of every blob file sled wrote for an oversized
//! value since the last pass (and of the blob directory that names them). Concurrent callers share
//! one pass (group commit): a caller takes a ticket after its flush, and a pass started after the
//! ticket covers it.
//!
//! Start-up also removes what an interrupted sled snapshot leaves behind: a `snap.*.generating`
//! file that sled's own listing would read as the newest snapshot and refuse as corrupt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::StoreError;

/// sled's data file inside its directory (sled 0.34 layout).
const DATA_FILE: &str = "db";
/// sled's directory of values too large to sit in a log segment.
const BLOB_DIR: &str = "blobs";
/// The suffix sled gives a snapshot file while it writes it.
const PARTIAL_SNAPSHOT_SUFFIX: &str = ".generating";

/// The process's sled database with its durability pass. Cheap to clone.
#[derive(Clone)]
pub struct Disk {
    db: sled::Db,
    dir: PathBuf,
    sync: Arc<Syncer>,
}

struct Syncer {
    data_file: Arc<File>,
    /// Tickets handed out (a caller's writes are done before it takes one).
    tickets: AtomicU64,
    /// Completed durability passes (for tests and metrics).
    passes: AtomicU64,
    state: std::sync::Mutex<SyncState>,
}

impl Syncer {
    /// A durability pass covering this caller's writes, unless one that started after its writes
    /// has already covered them (group commit: the callers waiting on the lock share the next
    /// pass). A pass is sled's flush then `fdatasync`, run by one caller for all those holding a
    /// ticket so far: one sled flush per pass, not one per caller (each flush seals and writes
    /// sled's current buffer, so concurrent ones wrote many small buffers).
    fn flush_and_pass(&self, db: &sled::Db, blobs: &Path) -> Result<(), StoreError> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.done >= ticket {
            return Ok(());
        }
        // Every ticket up to `target` was taken after its holder's writes, so the flush below
        // (which makes stable everything written before it starts) covers them all.
        let target = self.tickets.load(Ordering::SeqCst);
        db.flush()?;
        // sled seals its write buffer on a flush and frees the old one through crossbeam's epoch
        // collector, deferred into this thread's local bag — which, on a blocking-pool thread
        // that does little else, is not collected until it fills: hundreds of 512 KiB buffers
        // were held that way (244 MiB at the peak of `bench-cells 1000 1000 250`, heap profile
        // in BENCHMARKS.md). Hand them to the global collector now.
        crossbeam_epoch::pin().flush();
        self.data_file.sync_data()?;
        state.blobs_synced = sync_new_blobs(blobs, state.blobs_synced)?;
        state.done = target;
        self.passes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Default)]
struct SyncState {
    /// Every ticket ≤ this is durable.
    done: u64,
    /// Blob files named ≤ this were fsynced.
    blobs_synced: u64,
}

/// sled's page cache, by default: what a node keeps of its views' pages in memory (sled's own default
/// is 1 GiB, which with 250,000 instances held most of a node's heap — the heap profile in
/// BENCHMARKS.md). Pages outside it are read back from the files, which the kernel's page cache
/// usually holds; `--sled-cache-mb` changes it.
pub const SLED_CACHE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

impl Disk {
    /// Opens (or creates) the database in `dir`, after removing leftover partial sled snapshots,
    /// with a page cache of at most `cache_bytes` (as sled counts them).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        remove_partial_snapshots(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(cache_bytes)
            .open()?;
        let data_file = File::open(dir.join(DATA_FILE))?;
        // The data file's own directory entry, once: it exists from here on.
        File::open(dir)?.sync_all()?;
        Ok(Self {
            db,
            dir: dir.to_owned(),
            sync: Arc::new(Syncer {
                data_file: Arc::new(data_file),
                tickets: AtomicU64::new(0),
                passes: AtomicU64::new(0),
                state: std::sync::Mutex::new(SyncState::default()),
            }),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns once everything written to the database before the call is on stable storage.
    /// sled's own `flush_async` is not used: with many concurrent callers it was seen to never
    /// complete (sled 0.34.7); the blocking `flush` on the blocking pool has no such problem. The
    /// flush and the pass run in ONE blocking task (one thread hop per call, not two).
    pub async fn make_durable(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let (db, sync, blobs) = (self.db.clone(), self.sync.clone(), self.dir.join(BLOB_DIR));
        tokio::task::spawn_blocking(move || sync.flush_and_pass(&db, &blobs))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        metrics::histogram!(crate::metrics::FLUSH_DURATION).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// How many durability passes (fdatasync of the data file) have completed.
    pub fn sync_passes(&self) -> u64 {
        self.sync.passes.load(Ordering::SeqCst)
    }

    /// Bytes free for an unprivileged writer on the filesystem that holds the database.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| StoreError::Io(e.into()))?;
        #[allow(clippy::useless_conversion)] // the field types differ between platforms
        Ok(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
    }
}

/// Fsyncs the blob files named above `floor` (sled names them by log sequence number) and, if
/// there were any, the blob directory; returns the new floor.
fn sync_new_blobs(blobs: &Path, floor: u64) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(blobs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(floor),
        Err(e) => return Err(e),
    };
    let mut highest = floor;
    for entry in entries {
        let entry = entry?;
        let Some(lsn) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if lsn <= floor {
            continue;
        }
        match File::open(entry.path()) {
            Ok(f) => f.sync_all()?,
            // sled removed it meanwhile (rewritten or collected): nothing to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        highest = highest.max(lsn);
    }
    if highest > floor {
        File::open(blobs)?.sync_all()?;
    }
    Ok(highest)
}

/// Removes `snap.*.generating` files: a sled snapshot interrupted by a crash (or a full disk).
/// The finished snapshots and the data file still hold every committed write.
fn remove_partial_snapshots(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(PARTIAL_SNAPSHOT_SUFFIX) {
            tracing::warn!(file = %name, "removing a partial sled snapshot left by an interrupted run");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test function: sled databases opened concurrently in one process can deadlock in
    // flush, so these checks run one after the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::await_holding_lock)] // only other sled tests wait on it, and they hold no other lock
    async fn durability_passes_partial_snapshots_and_free_space() {
        let _serial = crate::SLED_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let disk = Disk::open(&path, SLED_CACHE_BYTES_DEFAULT).expect("open");
            let before = disk.sync_passes();
            disk.db().insert(b"kept", b"yes").expect("insert");
            disk.make_durable().await.expect("durable");
            assert_eq!(disk.sync_passes(), before + 1, "one write, one pass");
            let mut calls = Vec::new();
            for i in 0..32u32 {
                let d = disk.clone();
                calls.push(tokio::spawn(async move {
                    d.db().insert(i.to_be_bytes(), b"v").expect("insert");
                    d.make_durable().await
                }));
            }
            for c in calls {
                c.await.expect("join").expect("durable");
            }
            let passes = disk.sync_passes() - before - 1;
            assert!((1..=32).contains(&passes), "32 callers, {passes} passes");
            assert!(disk.free_bytes().expect("statvfs") > 0);
        }
        // What a crash during sled's own snapshot on a full disk leaves: an empty `.generating`
        // file, which sled 0.34 would take as its newest snapshot and refuse as corrupt.
        let partial = path.join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&partial, b"").expect("write");
        let disk = Disk::open(&path, SLED_CACHE_BYTES_DEFAULT).expect("reopen");
        assert_eq!(disk.db().get(b"kept").expect("get").as_deref(), Some(&b"yes"[..]));
        assert!(!partial.exists());
    }
}

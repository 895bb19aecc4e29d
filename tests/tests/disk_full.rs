//! Issue 9, defect 2: a full disk. On a small tmpfs the test mounts, writes are refused early with
//! 507 in Receptor's shape (and `Retry-After`) below the free-space floor, nothing acknowledged is
//! lost, and writes resume once space is freed. With no floor, a disk that really fills stops the
//! Raft core: the node exits non-zero (so a supervisor restarts it) instead of running on dead,
//! and after space is freed it restarts with every acknowledged write.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capstan_tests::Capstan;

/// A tmpfs of `size_mb` mounted on a fresh folder; unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mb: u32) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mount = dir.path().join("small");
        std::fs::create_dir_all(&mount).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { mount, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Fills the filesystem of `dir` with a file until `leave_bytes` remain (or it is full).
fn fill(dir: &Path, name: &str, leave_bytes: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0x5a_u8; 256 * 1024];
    loop {
        let free = nix_free(dir);
        if free <= leave_bytes {
            break;
        }
        let n = usize::try_from((free - leave_bytes).min(chunk.len() as u64)).unwrap_or(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

fn nix_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn big_lrp(guid: &str) -> String {
    serde_json::json!({
        "process_guid": guid, "domain": "disk", "rootfs": "preloaded:cflinuxfs4", "instances": 1,
        "annotation": "x".repeat(8 * 1024),
        "action": {"run": {"path": "true", "user": "vcap"}},
    })
    .to_string()
}

fn dev_args(data: &Path, floor_mb: u32) -> Vec<String> {
    Capstan::dev_args(data, &["--no-cell", "--disk-free-floor-mb", &floor_mb.to_string()])
}

#[tokio::test]
async fn a_full_disk_is_refused_early_survived_and_recovered_from() {
    let Some(disk) = SmallDisk::mount(64) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data = disk.mount.join("data");

    // 1. Below the floor: 507 InsufficientStorage with Retry-After, before anything is written.
    let mut c = Capstan::spawn_under(&[], &dev_args(&data, 16), &data).expect("start");
    let mut acked = Vec::new();
    for i in 0..5 {
        let guid = format!("before-{i}");
        assert_eq!(c.post("/v1/desired_lrps", &big_lrp(&guid)).await.status, 201);
        acked.push(guid);
    }
    let filler = fill(&disk.mount, "filler", 12 * 1024 * 1024);
    let refused = c.post("/v1/desired_lrps", &big_lrp("refused")).await;
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert_eq!(refused.json()["name"], "InsufficientStorage");
    assert!(refused.json()["message"].as_str().unwrap_or("").contains("floor"));
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        c.get("/v1/desired_lrps/refused").await.status,
        404,
        "a refused write changed nothing"
    );
    for guid in &acked {
        assert_eq!(c.get(&format!("/v1/desired_lrps/{guid}")).await.status, 200, "{guid}");
    }
    // Space freed: writes go through again, without a restart.
    std::fs::remove_file(&filler).expect("free space");
    assert_eq!(c.post("/v1/desired_lrps", &big_lrp("after-free")).await.status, 201);
    acked.push("after-free".into());
    let status = c.terminate().expect("terminate");
    assert!(status.success(), "{status}");

    // 2. No floor: the disk really fills. The node must stop and exit non-zero, not run on dead.
    let mut c = Capstan::spawn_under(&[], &dev_args(&data, 0), &data).expect("restart without floor");
    let filler = fill(&disk.mount, "filler", 256 * 1024);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let status = loop {
        if let Some(status) = c.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node kept running on a full disk"
        );
        i += 1;
        let guid = format!("full-{i}");
        let sent = c
            .client
            .post(c.url("/v1/desired_lrps"))
            .header("content-type", "application/json")
            .body(big_lrp(&guid))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 201 => acked.push(guid),
            // A refusal, or the node is going down: wait for it a little before the next try.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(
        !status.success(),
        "a node whose storage failed exits non-zero: {status}"
    );

    // 3. Space freed, restarted: every acknowledged write is there, and writes work.
    std::fs::remove_file(&filler).expect("free space");
    let c = Capstan::spawn_under(&[], &dev_args(&data, 16), &data).expect("restart after freeing space");
    for guid in &acked {
        assert_eq!(
            c.get(&format!("/v1/desired_lrps/{guid}")).await.status,
            200,
            "acknowledged {guid} lost"
        );
    }
    assert_eq!(c.post("/v1/desired_lrps", &big_lrp("recovered")).await.status, 201);
}

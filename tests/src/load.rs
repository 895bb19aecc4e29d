//! A steady write load over HTTP for cluster tests: writers create DesiredLRPs through the given
//! gateways (round-robin, moving on from a node that fails) and record every acknowledged one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lrp_json;

pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `writers` writers over `base_urls` (`http://ip:port`); guids are `<prefix>-<w>-<i>`.
    pub fn start(base_urls: Vec<String>, writers: usize, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let urls = Arc::new(base_urls);
        let tasks = (0..writers)
            .map(|w| {
                let (stop, acked, client, urls) = (stop.clone(), acked.clone(), client.clone(), urls.clone());
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let mut target = w;
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let guid = format!("{prefix}-{w}-{i}");
                        let url = format!("{}/v1/desired_lrps", urls[target % urls.len()]);
                        let r = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(lrp_json(&guid, "load", 1))
                            .send()
                            .await;
                        match r.map(|r| r.status().as_u16()) {
                            // 409: an earlier attempt whose answer was lost did commit.
                            Ok(200 | 201 | 409) => {
                                if let Ok(mut a) = acked.lock() {
                                    a.push(guid);
                                }
                                i += 1;
                            }
                            // 503 / transport error: try the same guid on the next node.
                            _ => {
                                target += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load { stop, acked, tasks }
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Waits until `more` further writes are acknowledged.
    pub async fn wait_for_more(&self, more: usize, deadline: Duration) {
        let target = self.acked() + more;
        crate::wait_for(&format!("{target} acknowledged writes"), deadline, || {
            let n = self.acked();
            async move { (n >= target).then_some(()) }
        })
        .await;
    }

    /// Stops the writers and returns every acknowledged guid.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

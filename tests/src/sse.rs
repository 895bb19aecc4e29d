//! A Server-Sent Events client for tests: connects to `/v1/events`, parses `id:`/`event:`/`data:`
//! frames as they arrive, and hands them out with deadlines.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;

/// One SSE message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub data: serde_json::Value,
}

/// A live subscription; dropped = disconnected.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a connect answered when it was not a stream: (status, body).
pub type Refused = (u16, String);

/// Connects to `base` + `path` (e.g. `/v1/events?kinds=...`), resuming after `last_id` if given.
pub async fn subscribe(base: &str, path: &str, last_id: Option<&str>) -> Result<Result<Subscription, Refused>> {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    let mut resp = req.send().await.context("connecting to the event stream")?;
    if resp.status() != 200 {
        let status = resp.status().as_u16();
        return Ok(Err((status, resp.text().await.unwrap_or_default())));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut buf = String::new();
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => {
                    let _ = tx.send(Err("the stream ended".to_owned()));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut e = Event {
                    id: String::new(),
                    kind: String::new(),
                    data: serde_json::Value::Null,
                };
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        e.id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        e.kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        e.data = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
                    }
                }
                if !e.kind.is_empty() && tx.send(Ok(e)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(Ok(Subscription { rx, task }))
}

impl Subscription {
    /// The next event, within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Result<Event> {
        match tokio::time::timeout(deadline, self.rx.recv()).await {
            Ok(Some(Ok(e))) => Ok(e),
            Ok(Some(Err(why))) => bail!("{why}"),
            Ok(None) => bail!("the stream ended"),
            Err(_) => bail!("no event within {deadline:?}"),
        }
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize, deadline: Duration) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next(deadline).await?);
        }
        Ok(out)
    }

    /// Whether no event arrives within `window` (an absence is observed over a window).
    pub async fn quiet_for(&mut self, window: Duration) -> bool {
        tokio::time::timeout(window, self.rx.recv()).await.is_err()
    }
}

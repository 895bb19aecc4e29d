//! The event stream (`ControlPlane.Watch`, and through the gateway `GET /v1/events`): every event
//! of this node's journal after a position, in log order, filtered on the server. A position is
//! (log index, offset of the event in that entry's record), so resuming never repeats or skips an
//! event. Any node serves it from its own journal; a node behind the position the client has seen
//! first catches up (bounded wait), so a client never goes back in time across a reconnect.
//!
//! Bounded: a subscriber has [`SUBSCRIBER_BUFFER_EVENTS`] events in flight; one that does not read
//! is dropped with a final RESOURCE_EXHAUSTED instead of growing memory or slowing apply; at most
//! [`SUBSCRIBERS_MAX`] streams at once (UNAVAILABLE beyond). A position older than the journal
//! keeps (retention, or a snapshot install that started it over) is EVENTS_GONE: re-list.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capstan_proto::pb::{self, ErrorKind};
use capstan_raft::RaftNode;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::stream::RowStream;
use crate::errors;

/// Events buffered per subscriber before it counts as not reading (Receptor: 1,024).
pub const SUBSCRIBER_BUFFER_EVENTS: usize = 1024;
/// Event streams one node serves at once.
pub const SUBSCRIBERS_MAX: usize = 1024;
/// How long a node behind the client's position may take to catch up before it answers 503.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// The watchers of one node: how many, and the node's stop signal (streams end on shutdown).
#[derive(Clone)]
pub struct Watchers {
    count: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
}

impl Watchers {
    pub fn new(stop: watch::Receiver<bool>) -> Self {
        Self {
            count: Arc::default(),
            stop,
        }
    }
}

/// Counts a stream while it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Self {
        metrics::gauge!(crate::metrics::EVENT_SUBSCRIBERS).increment(1.0);
        Slot(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(crate::metrics::EVENT_SUBSCRIBERS).decrement(1.0);
    }
}

/// Whether the client asked for this event.
fn wanted(req: &pb::WatchRequest, name: &str, e: &pb::Event) -> bool {
    use pb::event::Kind as K;
    if !req.kinds.is_empty() && !req.kinds.iter().any(|k| k == name) {
        return false;
    }
    let (domain, guid): (Option<&str>, Option<&str>) = match e.kind.as_ref() {
        Some(K::DesiredLrpCreated(pb::DesiredLrpCreated { desired_lrp: Some(d) }))
        | Some(K::DesiredLrpRemoved(pb::DesiredLrpRemoved { desired_lrp: Some(d) }))
        | Some(K::DesiredLrpChanged(pb::DesiredLrpChanged { after: Some(d), .. })) => {
            (Some(&d.domain), Some(&d.process_guid))
        }
        Some(K::ActualLrpCreated(pb::ActualLrpCreated { actual_lrp: Some(a) }))
        | Some(K::ActualLrpRemoved(pb::ActualLrpRemoved { actual_lrp: Some(a) }))
        | Some(K::ActualLrpChanged(pb::ActualLrpChanged { after: Some(a), .. })) => {
            (Some(&a.domain), Some(&a.process_guid))
        }
        Some(K::TaskRunQueued(pb::TaskRunQueued { run: Some(r) }))
        | Some(K::TaskRunRemoved(pb::TaskRunRemoved { run: Some(r) }))
        | Some(K::TaskRunChanged(pb::TaskRunChanged { after: Some(r), .. })) => {
            (r.receptor.as_ref().map(|t| t.domain.as_str()), None)
        }
        _ => (None, None),
    };
    (req.domain.is_empty() || domain == Some(req.domain.as_str()))
        && (req.process_guid.is_empty() || guid == Some(req.process_guid.as_str()))
}

/// Where a stream starts: the first log index it reads, and how many events of that record to
/// skip (already seen).
fn start(node: &RaftNode, req: &pb::WatchRequest) -> Result<(u64, usize), Status> {
    if !req.resume {
        return Ok((node.applied_index() + 1, 0));
    }
    let floor = node.views().journal_floor().map_err(errors::storage)?;
    let (first, skip) = match req.after_offset {
        Some(k) => (
            req.after_index,
            usize::try_from(k).unwrap_or(usize::MAX).saturating_add(1),
        ),
        None => (req.after_index + 1, 0),
    };
    if first < floor {
        return Err(gone(req.after_index, floor));
    }
    Ok((first, skip))
}

fn gone(after: u64, floor: u64) -> Status {
    errors::status(
        ErrorKind::EventsGone,
        format!(
            "events after {after} are no longer kept (this node's journal starts at {floor}): list the current state and \
             watch from now on"
        ),
        0,
    )
}

/// Starts a stream for `req` (the position checked before any event is sent).
pub async fn watch(
    node: RaftNode,
    watchers: &Watchers,
    req: pb::WatchRequest,
    secrets: bool,
) -> Result<RowStream<pb::WatchEvent>, Status> {
    if let Some(bad) = req
        .kinds
        .iter()
        .find(|k| !capstan_proto::EVENT_NAMES.contains(&k.as_str()))
    {
        return Err(errors::status(
            ErrorKind::InvalidRequest,
            format!(
                "unknown event kind {bad}; kinds are {}",
                capstan_proto::EVENT_NAMES.join(", ")
            ),
            0,
        ));
    }
    if watchers.count.fetch_add(1, Ordering::SeqCst) >= SUBSCRIBERS_MAX {
        watchers.count.fetch_sub(1, Ordering::SeqCst);
        return Err(errors::status(
            ErrorKind::Unavailable,
            format!("this node already serves {SUBSCRIBERS_MAX} event streams"),
            1000,
        ));
    }
    let slot = Slot::take(&watchers.count);
    // A client resuming from a position this node has not applied yet waits for it.
    if req.resume && node.applied_index() < req.after_index {
        let mut m = node.raft.metrics();
        let target = req.after_index;
        let caught_up = tokio::time::timeout(
            CATCH_UP_WAIT,
            m.wait_for(|m| m.last_applied.map(|l| l.index).unwrap_or(0) >= target),
        )
        .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return Err(errors::status(
                ErrorKind::Unavailable,
                format!("this node has not yet applied up to {target}; retry here or on another node"),
                500,
            ));
        }
    }
    let (mut next, mut skip) = start(&node, &req)?;
    let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER_EVENTS);
    let mut stop = watchers.stop.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let mut metrics = node.raft.metrics();
        loop {
            let upto = node.applied_index();
            match node.views().journal_floor() {
                Ok(floor) if next < floor => {
                    // A snapshot install started the journal over past this stream's position.
                    let _ = tx.send(Err(gone(next.saturating_sub(1), floor))).await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(errors::storage(e))).await;
                    return;
                }
            }
            for record in node.views().journal_from(next) {
                let record = match record {
                    Ok(r) if r.log_index <= upto => r,
                    Ok(_) => break,
                    Err(e) => {
                        let _ = tx.send(Err(errors::storage(e))).await;
                        return;
                    }
                };
                let last = record.events.len().saturating_sub(1);
                // Records are shared with the other readers: only the events sent are copied.
                for (k, e) in record.events.iter().enumerate().skip(skip) {
                    let Some(name) = capstan_proto::event_name(e) else {
                        continue;
                    };
                    if !wanted(&req, name, e) {
                        continue;
                    }
                    // One slot is kept for the message that says why the stream ends.
                    if tx.capacity() <= 1 {
                        metrics::counter!(crate::metrics::EVENT_SUBSCRIBERS_DROPPED).increment(1);
                        let _ = tx.try_send(Err(Status::resource_exhausted(format!(
                            "slow consumer: more than {SUBSCRIBER_BUFFER_EVENTS} events unread; resume from the last id"
                        ))));
                        return;
                    }
                    let item = pb::WatchEvent {
                        index: record.log_index,
                        offset: u32::try_from(k).unwrap_or(u32::MAX),
                        last_in_record: k == last,
                        kind: name.to_owned(),
                        event: Some(if secrets {
                            e.clone()
                        } else {
                            let mut e = e.clone();
                            capstan_storage::rules::cf::hide_secrets(&mut e);
                            e
                        }),
                        time_unix_ns: record.time_unix_ns,
                    };
                    if tx.try_send(Ok(item)).is_err() {
                        return;
                    }
                }
                skip = 0;
                next = record.log_index + 1;
            }
            // Entries without events leave no record: the stream is at `upto` now.
            if next <= upto {
                next = upto + 1;
                skip = 0;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(domain: &str, guid: &str) -> pb::Event {
        pb::Event {
            kind: Some(pb::event::Kind::DesiredLrpCreated(pb::DesiredLrpCreated {
                desired_lrp: Some(pb::DesiredLrp {
                    domain: domain.into(),
                    process_guid: guid.into(),
                    ..Default::default()
                }),
            })),
        }
    }

    #[test]
    fn filters_by_kind_domain_and_process() {
        let e = desired("cf-apps", "web");
        let name = capstan_proto::event_name(&e).unwrap_or_default();
        let req = |kinds: &[&str], domain: &str, guid: &str| pb::WatchRequest {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            domain: domain.into(),
            process_guid: guid.into(),
            ..Default::default()
        };
        assert!(wanted(&req(&[], "", ""), name, &e));
        assert!(wanted(&req(&["desired_lrp_created"], "cf-apps", "web"), name, &e));
        assert!(!wanted(&req(&["actual_lrp_created"], "", ""), name, &e));
        assert!(!wanted(&req(&[], "other", ""), name, &e));
        assert!(!wanted(&req(&[], "", "api"), name, &e));
    }
}

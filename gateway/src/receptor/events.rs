//! `GET /v1/events`: the event stream as Server-Sent Events with Receptor's event names and JSON
//! payloads, resuming after `Last-Event-ID`; one `ControlPlane.Watch` call per stream.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use capstan_proto::pb;

use super::error::ReceptorError;
use super::Result;
use crate::common::extract::FamilyQuery;
use crate::Gateway;

/// How often an idle event stream gets a comment line, so that proxies do not cut it.
pub const EVENTS_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The LRP event names `/v1/events` carries when no `kinds` are asked for (the Go client fails on
/// names it does not know).
const LRP_EVENTS: [&str; 6] = [
    "desired_lrp_created",
    "desired_lrp_changed",
    "desired_lrp_removed",
    "actual_lrp_created",
    "actual_lrp_changed",
    "actual_lrp_removed",
];

/// An event id: `N` (after the whole record of log index N) or `N.k` (after its event k).
pub fn parse_event_id(id: &str) -> Option<(u64, Option<u32>)> {
    match id.split_once('.') {
        None => id.parse().ok().map(|n| (n, None)),
        Some((n, k)) => Some((n.parse().ok()?, Some(k.parse().ok()?))),
    }
}

pub fn event_id(e: &pb::WatchEvent) -> String {
    if e.last_in_record {
        e.index.to_string()
    } else {
        format!("{}.{}", e.index, e.offset)
    }
}

/// `GET /v1/events`: Server-Sent Events with Receptor's names and payloads; `Last-Event-ID` (or
/// `?last_event_id=`) resumes right after that event; `?kinds=a,b` asks for other kinds (task
/// events); `?domain=` and `?process_guid=` filter.
#[utoipa::path(
    get, path = "/events", tag = "Receptor: events",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume right after this event id (`N` or `N.k`)"),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set the header"),
        ("kinds" = Option<String>, Query, description = "Event names, comma-separated (default: the LRP events)"),
        ("domain" = Option<String>, Query),
        ("process_guid" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "Server-Sent Events, one per state change, without end", content_type = "text/event-stream", body = String),
        super::error::Errors,
    )
)]
pub(super) async fn events(
    State(gw): State<Gateway>,
    FamilyQuery(q): FamilyQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| q.get("last_event_id").cloned())
        .filter(|s| !s.is_empty());
    let position = match &last {
        None => None,
        Some(id) => Some(parse_event_id(id.trim()).ok_or_else(|| {
            ReceptorError::invalid_request(format!("Last-Event-ID {id} is not an event id (N or N.k)"))
        })?),
    };
    let kinds: Vec<String> = match q.get("kinds") {
        Some(k) => k
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        None => LRP_EVENTS.iter().map(|k| k.to_string()).collect(),
    };
    let req = pb::WatchRequest {
        resume: position.is_some(),
        after_index: position.map_or(0, |p| p.0),
        after_offset: position.and_then(|p| p.1),
        kinds,
        domain: q.get("domain").cloned().unwrap_or_default(),
        process_guid: q.get("process_guid").cloned().unwrap_or_default(),
    };
    let stream = gw.client.clone().watch(req).await?.into_inner();
    Ok(sse::response(stream, EVENTS_KEEPALIVE))
}

pub mod sse {
    //! The SSE framing of the event stream: `id:`, `event:`, one `data:` line of JSON, a blank
    //! line; a comment line while idle; a last comment saying why, when the node ends the stream.

    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};
    use bytes::Bytes;
    use capstan_proto::pb::{self, event::Kind as K};
    use futures::StreamExt;

    use super::super::dto::{ActualLrpResponse, DesiredLrpResponse, TaskResponse};

    /// `{"k1": v1, "k2": v2}` with the values serialized in their own field order (a JSON map
    /// would sort the keys of the resources).
    fn object(fields: &[(&str, Option<String>)]) -> String {
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}", v.as_deref().unwrap_or("null")))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    fn to_json<T: serde::Serialize>(v: Option<T>) -> Option<String> {
        v.and_then(|v| serde_json::to_string(&v).ok())
    }

    /// Receptor's payload of an event (one line of JSON).
    pub fn payload(e: pb::Event) -> String {
        let d = |x: Option<pb::DesiredLrp>| to_json(x.map(DesiredLrpResponse::from));
        let a = |x: Option<pb::ActualLrp>| to_json(x.map(ActualLrpResponse::from));
        let t = |x: Option<pb::TaskRun>| to_json(x.map(TaskResponse::from));
        match e.kind {
            Some(K::DesiredLrpCreated(c)) => object(&[("desired_lrp", d(c.desired_lrp))]),
            Some(K::DesiredLrpRemoved(c)) => object(&[("desired_lrp", d(c.desired_lrp))]),
            Some(K::DesiredLrpChanged(c)) => {
                object(&[("desired_lrp_before", d(c.before)), ("desired_lrp_after", d(c.after))])
            }
            Some(K::ActualLrpCreated(c)) => object(&[("actual_lrp", a(c.actual_lrp))]),
            Some(K::ActualLrpRemoved(c)) => object(&[("actual_lrp", a(c.actual_lrp))]),
            Some(K::ActualLrpChanged(c)) => {
                object(&[("actual_lrp_before", a(c.before)), ("actual_lrp_after", a(c.after))])
            }
            Some(K::TaskRunQueued(c)) => object(&[("task", t(c.run))]),
            Some(K::TaskRunRemoved(c)) => object(&[("task", t(c.run))]),
            Some(K::TaskRunChanged(c)) => object(&[("task_before", t(c.before)), ("task_after", t(c.after))]),
            _ => "null".to_owned(),
        }
    }

    fn frame(e: pb::WatchEvent) -> Bytes {
        let id = super::event_id(&e);
        let kind = e.kind.clone();
        let data = payload(e.event.unwrap_or_default());
        Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
    }

    pub fn response(stream: tonic::Streaming<pb::WatchEvent>, keepalive: Duration) -> Response {
        let events = stream.map(|item| match item {
            Ok(e) => Some(frame(e)),
            Err(status) => Some(Bytes::from(format!(
                ": stream ended: {}\n\n",
                status.message().replace('\n', " ")
            ))),
        });
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive,
            keepalive,
        ))
        .map(|_| Some(Bytes::from_static(b": keep-alive\n\n")));
        // The stream ends with the node's; the keep-alive ticks stop with it.
        let body = futures::stream::select(events.chain(futures::stream::once(async { None })), ticks)
            .take_while(|b| futures::future::ready(b.is_some()))
            .filter_map(futures::future::ready)
            .map(Ok::<_, std::io::Error>);
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            ],
            Body::from_stream(body),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_name_a_record_or_an_event_in_it() {
        assert_eq!(parse_event_id("42"), Some((42, None)));
        assert_eq!(parse_event_id("42.3"), Some((42, Some(3))));
        for bad in ["", "x", "4.2.1", "-1", "1.", ".1"] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
        let e = |last| pb::WatchEvent {
            index: 7,
            offset: 2,
            last_in_record: last,
            ..Default::default()
        };
        assert_eq!(
            (event_id(&e(true)), event_id(&e(false))),
            ("7".to_owned(), "7.2".to_owned())
        );
    }
}

//! Streams a gRPC server stream out as one JSON document, item by item, never holding the list:
//! a bare array (Receptor), or an array inside an envelope (`{"pagination":…,"resources":[…]}`
//! for CF, `{"history":[…],…}` for Flotilla) whose head and tail the family writes.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

/// `[item, item, ...]` from `stream`, each item converted by `to_json`.
pub fn array<M, J, F>(stream: tonic::Streaming<M>, to_json: F) -> Response
where
    M: Send + 'static,
    J: Serialize,
    F: Fn(M) -> J + Send + 'static,
{
    enveloped(Bytes::from_static(b"["), stream, to_json, Bytes::from_static(b"]"))
}

/// `head`, then the items separated by commas, then `tail`. `head` must open the array the items
/// go into and `tail` close it (and whatever encloses it). An error after the first byte can no
/// longer change the status: the body is cut short (the client sees invalid JSON) and the error
/// is logged.
pub fn enveloped<M, J, F>(head: Bytes, stream: tonic::Streaming<M>, to_json: F, tail: Bytes) -> Response
where
    M: Send + 'static,
    J: Serialize,
    F: Fn(M) -> J + Send + 'static,
{
    let mut first = true;
    let items = stream.map(move |item| match item {
        Ok(m) => {
            let mut buf = if first { Vec::new() } else { vec![b','] };
            first = false;
            serde_json::to_writer(&mut buf, &to_json(m)).map_err(std::io::Error::other)?;
            Ok(Bytes::from(buf))
        }
        Err(status) => {
            tracing::warn!(%status, "list stream failed mid-way");
            Err(std::io::Error::other(status.message().to_owned()))
        }
    });
    let body = futures::stream::once(async { Ok::<_, std::io::Error>(head) })
        .chain(items)
        .chain(futures::stream::once(async { Ok(tail) }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

//! Streams a gRPC server stream out as one JSON array, item by item, never holding the list.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;

/// `[item, item, ...]` from `stream`, each item converted by `to_json`. An error after the
/// first byte can no longer change the status: the body is cut short and the error logged.
pub fn array<M, J, F>(stream: tonic::Streaming<M>, to_json: F) -> Response
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
            Ok(bytes::Bytes::from(buf))
        }
        Err(status) => {
            tracing::warn!(%status, "list stream failed mid-way");
            Err(std::io::Error::other(status.message().to_owned()))
        }
    });
    let body = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"[")) })
        .chain(items)
        .chain(futures::stream::once(async { Ok(bytes::Bytes::from_static(b"]")) }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

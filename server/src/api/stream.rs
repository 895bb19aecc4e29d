//! Server-streaming answers shared by the services: rows read from sled on a blocking thread,
//! through a bounded channel, to the gRPC stream.

use std::pin::Pin;

use capstan_storage::views::RowIter;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::errors;

/// Rows a list stream may have in flight between the sled reader and the gRPC writer.
pub const LIST_STREAM_BUFFER_ROWS: usize = 256;

pub type RowStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams rows read from sled on a blocking thread; stops when the caller goes away.
pub fn stream_rows<T: Send + 'static>(rows: RowIter<T>, keep: impl Fn(&T) -> bool + Send + 'static) -> RowStream<T> {
    stream_rows_as(rows, move |r| keep(&r).then_some(r))
}

/// [`stream_rows`], each row as `shown` makes it (`None`: left out).
pub fn stream_rows_as<T: Send + 'static>(
    rows: RowIter<T>,
    shown: impl Fn(T) -> Option<T> + Send + 'static,
) -> RowStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(LIST_STREAM_BUFFER_ROWS);
    tokio::task::spawn_blocking(move || {
        for row in rows {
            let item = match row.map(&shown) {
                Ok(None) => continue,
                Ok(Some(r)) => Ok(r),
                Err(e) => Err(errors::storage(e)),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

//! Request bodies: read with a size limit, decoded as JSON the way Go's encoding/json does
//! (unknown fields ignored, `null` leaves a field at its zero value).

use axum::body::Body;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::REQUEST_BODY_BYTES_MAX;

/// Why a body could not be turned into a request.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    /// The body stalled longer than the body idle timeout.
    Timeout,
    Read(String),
    Json(String),
}

/// Reads the whole body, refusing more than [`REQUEST_BODY_BYTES_MAX`] bytes.
pub async fn read(body: Body) -> Result<bytes::Bytes, BodyError> {
    axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX).await.map_err(|e| {
        let text = e.to_string();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<tower_http::timeout::TimeoutError>() {
                return BodyError::Timeout;
            }
            cause = c.source();
        }
        // axum reports the limit as a length-limit error in the source chain.
        if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"))
            || text.contains("length limit")
        {
            BodyError::TooLarge
        } else {
            BodyError::Read(text)
        }
    })
}

/// Reads and decodes a JSON body.
pub async fn json<T: DeserializeOwned>(body: Body) -> Result<T, BodyError> {
    let bytes = read(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| BodyError::Json(e.to_string()))
}

/// `#[serde(default, deserialize_with = "null_default")]`: JSON `null` → the zero value, as Go does.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

//! Reading a POST body of any content type, bounded, without ever hanging (decision 10).

use actix_web::web::{self, BytesMut};
use futures_util::StreamExt as _;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("Request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("Request body could not be read")]
    Broken,
}

/// The whole body, or an error once it passes `limit` bytes. Slow or stalled clients are cut
/// off by the server's request timeouts, not here.
pub async fn read(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, BodyError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

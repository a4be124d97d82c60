//! `coins hasher`: `POST /` answers the sha256 of the body, in lowercase hex; `GET /health`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::{http, mining};

/// The largest body hashed: rng's largest answer.
pub const MAX_BODY: usize = crate::rng::MAX_BYTES;

pub fn router() -> Router {
    Router::new()
        .route("/", post(hash))
        .route("/health", get(http::health))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn hash(body: Bytes) -> String {
    mining::sha256_hex(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_the_hex_sha256_of_the_body() {
        assert_eq!(hash(Bytes::from_static(b"abc")).await, mining::sha256_hex(b"abc"));
        assert_eq!(
            hash(Bytes::new()).await,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

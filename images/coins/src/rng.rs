//! `coins rng`: random bytes over HTTP. `GET /<n>` answers `n` bytes from the operating
//! system's generator, at most [`MAX_BYTES`] (workers ask for 32); `GET /health`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http;

/// The most bytes one request may ask for: 1 MiB.
pub const MAX_BYTES: usize = 1 << 20;

pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "GET /<n> answers n random bytes (n at most 1048576)\n" }))
        .route("/health", get(http::health))
        .route("/{n}", get(random))
}

async fn random(Path(n): Path<String>) -> Response {
    let n = match n.parse::<usize>() {
        Ok(n) if n <= MAX_BYTES => n,
        Ok(n) => {
            let message = format!("{n} bytes asked, at most {MAX_BYTES} served\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
        Err(_) => {
            let message = format!("expected /<number of bytes>, got /{n}\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    match random_bytes(n) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("no random bytes: {e}\n")).into_response(),
    }
}

/// `n` bytes from the operating system's generator.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(n: &str) -> (StatusCode, Vec<u8>) {
        let response = random(Path(n.to_string())).await;
        let status = response.status();
        (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec())
    }

    #[tokio::test]
    async fn answers_as_many_bytes_as_asked_up_to_one_mebibyte() {
        for n in [0, 1, 32, 1000, MAX_BYTES] {
            let (status, body) = get(&n.to_string()).await;
            assert_eq!((status, body.len()), (StatusCode::OK, n));
        }
        let (status, body) = get(&(MAX_BYTES + 1).to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(String::from_utf8(body).unwrap(), "1048577 bytes asked, at most 1048576 served\n");
        for bad in ["-1", "x", "3.5", "99999999999999999999999"] {
            assert_eq!(get(bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test]
    async fn two_answers_differ() {
        let (a, b) = (get("32").await.1, get("32").await.1);
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }
}

//! HTTP for the services: serving a router until shutdown, the `/health` answer, and the
//! small client the worker asks rng and hasher with.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONNECTION, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The largest answer the client reads (rng's largest, with room to spare).
pub const MAX_ANSWER: usize = 2 << 20;

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish: a service stopped by its daemon's stop signal drops no request it took.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// `GET /health` of rng, hasher and webui: the process serves.
pub async fn health() -> &'static str {
    "ok\n"
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: expected an http:// URL with a host")]
    BadUrl { url: String },
    #[error("{url}: cannot connect: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: {source}")]
    Request { url: String, source: hyper::Error },
    #[error("{url}: reading the answer: {message}")]
    Body { url: String, message: String },
    #[error("{url}: no answer within {}s", .timeout.as_secs_f32())]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

/// An HTTP/1.1 client that opens one connection per request. Through haproxy, that is what
/// makes a reload lose nothing: a new connection always reaches a haproxy process that
/// serves it, while a kept-alive one may be closed by an old process just as a request
/// goes out on it. The demo's request rate makes the extra connects cheap.
#[derive(Clone, Debug)]
pub struct Client {
    timeout: Duration,
}

impl Client {
    /// Each request, connecting included, has `timeout`.
    pub fn new(timeout: Duration) -> Client {
        Client { timeout }
    }

    pub async fn get(&self, url: &str) -> Result<Bytes, HttpError> {
        self.request(Method::GET, url, Bytes::new()).await
    }

    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> Result<Bytes, HttpError> {
        self.request(Method::POST, url, body.into()).await
    }

    /// The body of a 2xx answer; any other status is an error holding the body's start.
    pub async fn request(&self, method: Method, url: &str, body: Bytes) -> Result<Bytes, HttpError> {
        let bad = || HttpError::BadUrl { url: url.to_string() };
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let exchange = async {
            let stream = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|source| HttpError::Connect { url: url.to_string(), source })?;
            let _ = stream.set_nodelay(true);
            let failed = |source| HttpError::Request { url: url.to_string(), source };
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(failed)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, authority.as_str())
                .header(CONNECTION, "close")
                .body(Full::new(body))
                .expect("a request of a parsed URI");
            let answer = sender.send_request(request).await.map_err(failed)?;
            let status = answer.status();
            let body = Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| HttpError::Body { url: url.to_string(), message: e.to_string() })?
                .to_bytes();
            if !status.is_success() {
                return Err(HttpError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: summary(&body),
                });
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout { url: url.to_string(), timeout: self.timeout })?
    }
}

/// The start of an error answer as one line for a log: HTML tags left out (haproxy
/// answers a page), white space collapsed, at most 200 characters.
fn summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c => plain.push(c),
        }
    }
    let line = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// `base` (`http://host:port`, with or without a final `/`) followed by `path` (`/32`).
pub fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};

    use super::*;

    async fn server(app: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, std::future::pending()));
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn the_client_gets_posts_and_reports_statuses() {
        let app = Router::new()
            .route("/hello", get(|| async { "hi" }))
            .route("/echo", post(|body: Bytes| async move { body }))
            .route("/teapot", get(|| async { (hyper::StatusCode::IM_A_TEAPOT, "short and stout\n") }));
        let base = server(app).await;
        let client = Client::new(Duration::from_secs(10));
        assert_eq!(client.get(&join(&base, "/hello")).await.unwrap(), "hi");
        assert_eq!(client.post(&join(&(base.clone() + "/"), "/echo"), "abc").await.unwrap(), "abc");
        let err = client.get(&join(&base, "/teapot")).await.unwrap_err();
        assert_eq!(err.to_string(), format!("{base}/teapot: answered 418: short and stout"));
        let err = client.get(&join(&base, "/nothing")).await.unwrap_err();
        assert!(matches!(err, HttpError::Status { status: 404, .. }), "{err}");
    }

    #[test]
    fn an_error_answer_is_summed_up_on_one_line() {
        let haproxy = b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";
        assert_eq!(
            summary(haproxy),
            "503 Service Unavailable No server is available to handle this request."
        );
        assert_eq!(summary(b"  at most\n 1 MiB \n"), "at most 1 MiB");
        assert_eq!(summary(b""), "");
        let long = "x".repeat(300);
        assert_eq!(summary(long.as_bytes()), format!("{}…", &long[..200]));
    }

    #[tokio::test]
    async fn bad_urls_and_closed_ports_are_errors() {
        let client = Client::new(Duration::from_secs(10));
        for url in ["https://127.0.0.1/", "127.0.0.1:80/x", "http:///x", "not a url"] {
            assert!(matches!(client.get(url).await, Err(HttpError::BadUrl { .. })), "{url}");
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        assert!(matches!(client.get(&closed).await, Err(HttpError::Connect { .. })));
    }
}

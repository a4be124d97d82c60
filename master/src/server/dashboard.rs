//! `GET /` and `GET /dashboard`: the web dashboard, one self-contained HTML page (inline CSS
//! and script, no external asset). It is served **without** the bearer token because it
//! holds no data: the page reads the token from its URL fragment (`#token=...`, which a
//! browser never sends), keeps it in the tab's `sessionStorage`, and calls the authenticated
//! routes with it: `fleet/ps` and `fleet/rollouts` (the fleet by role and version, rollout
//! progress), `events?follow=true&tail=N` (live events and heals; a fleet or minion event
//! refreshes the fleet at once), `minions`, `roles/status`, `jobs`, `keys`, and `POST jobs`
//! for its command box (a compound target, a function, the words as typed, which the master
//! splits). Everything it shows goes into the page as text nodes, never as markup.
//! `drover dashboard` prints the link; docs/dashboard.md shows what it shows.
//!
//! The answer carries a Content-Security-Policy that allows only this page's own script (by
//! its sha256), requests to this origin, and no framing.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page, as built into the binary.
pub const PAGE: &str = include_str!("dashboard.html");

/// The Content-Security-Policy of the page: its one inline script by hash, nothing else.
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        script_hash(PAGE)
    )
});

/// The routes of the page, for any router state: they need none.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(page)).route("/dashboard", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP.as_str()),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

/// The base64 sha256 of the text between the page's `<script>` and `</script>`, as a CSP
/// `'sha256-...'` source names it.
fn script_hash(page: &str) -> String {
    let start = page.find("<script>").expect("the page has a <script>") + "<script>".len();
    let end = start + page[start..].find("</script>").expect("the page has a </script>");
    let digest = hex::decode(wire::msg::sha256_hex(&page.as_bytes()[start..end])).expect("hex digest");
    base64(&digest)
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        let table = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, want) in table {
            assert_eq!(base64(plain.as_bytes()), want, "{plain:?}");
        }
    }

    #[test]
    fn the_csp_hash_covers_the_one_inline_script() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            script_hash("<p><script>alert(1)</script>"),
            "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
        assert_eq!(PAGE.matches("<script").count(), 1, "one inline script, no <script src>");
        assert!(CSP.contains(&format!("'sha256-{}'", script_hash(PAGE))));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_never_uses_inner_html() {
        for banned in
            ["http://", "https://", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"]
        {
            assert!(!PAGE.contains(banned), "the page contains {banned:?}");
        }
        assert!(PAGE.contains("<title>drover dashboard</title>"));
    }
}

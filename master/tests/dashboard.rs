//! The dashboard page of a real master: served without the token, holding no data, while
//! every JSON route still refuses a request without the token.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{LIMIT, Master, Repo};

/// One request without any `Authorization`: status, lowercased head, body.
fn anonymous(m: &Master, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(&m.url).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", m.url).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header");
    (head[9..12].parse().unwrap(), head.to_lowercase(), body.to_string())
}

#[test]
fn the_page_is_public_and_the_data_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    let m = Master::start(dir.path(), &repo.path());

    for path in ["/", "/dashboard"] {
        let (status, head, body) = anonymous(&m, path);
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains("content-type: text/html; charset=utf-8"), "{path}: {head}");
        assert!(head.contains("content-security-policy: default-src 'none'; script-src 'sha256-"), "{head}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(body.contains("<title>drover dashboard</title>"), "{path}");
        assert!(body.contains("drover dashboard"), "the page says how to open it");
        assert!(!body.contains(&m.token), "{path}: the page must not carry the token");
        assert!(!head.contains(&m.token), "{path}: the answer must not carry the token");
    }

    // with the token too, the same page: it never depends on who asks
    let (status, with_token) = m.call("GET", "/", None);
    assert_eq!(status, 200);
    assert!(!String::from_utf8(with_token).unwrap().contains(&m.token));

    for path in [
        "/api/v1/minions",
        "/api/v1/roles/status",
        "/api/v1/jobs?limit=20",
        "/api/v1/keys",
        "/api/v1/events?follow=true",
        "/api/v1/events",
    ] {
        let (status, _, body) = anonymous(&m, path);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("bearer token"), "{path}: {body}");
    }

    // and the routes the page calls answer with the token
    for path in ["/api/v1/minions", "/api/v1/roles/status", "/api/v1/jobs?limit=20", "/api/v1/keys"] {
        let (status, body) = m.json("GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    m.stop();
}

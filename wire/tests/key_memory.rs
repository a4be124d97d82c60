//! Parsing a key keeps no memory: the master parses the key of every message it receives,
//! so a few bytes kept per parse grow it without bound. Alone in its test binary, so that
//! no other test's allocations show in the process's RSS.

use wire::{KeyPair, PublicKey};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn parsing_keys_keeps_no_memory() {
    let key = KeyPair::generate().unwrap().public;
    let text = key.z85().to_string();
    for _ in 0..1000 {
        PublicKey::parse(&text).unwrap();
    }
    let before = rss_kib();
    for _ in 0..100_000 {
        assert_eq!(PublicKey::parse(&text).unwrap(), key);
        let _ = key.fingerprint();
    }
    let grown = rss_kib().saturating_sub(before);
    // zmq::z85_decode, used before, kept about 12 MiB here
    assert!(grown < 2 << 10, "parsing a key 100,000 times kept {grown} KiB");
}

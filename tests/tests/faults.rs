//! Faults: bad frames at the master's port, `kill -9` of the master mid-job, reconnection.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tests::{Master, Minion, minions, show, wait_until};
use wire::{Hello, Jid, JobReturn, KeyPair, MinionId, ToMaster, ToMinion};

/// A CURVE client with a key of its own (never accepted).
fn curve_client(ctx: &zmq::Context, master: &Master) -> zmq::Socket {
    curve_client_as(ctx, master, None)
}

/// A CURVE client with a key of its own, presenting `routing` as its routing id if given.
fn curve_client_as(ctx: &zmq::Context, master: &Master, routing: Option<&[u8]>) -> zmq::Socket {
    tests::curve_client(ctx, master, routing, &KeyPair::generate().unwrap())
}

#[test]
fn garbage_truncated_and_oversized_frames_leave_the_master_serving() {
    let master = Master::start(&["--auto-accept"]);
    let _m = minions(&master, "ok", 2, &[]);
    master.wait_for_minions(2);

    // raw TCP garbage, a truncated ZMTP greeting, and a greeting followed by nonsense
    for payload in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f],
        [vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0], b"CURVE".to_vec(), vec![0xAA; 4000]].concat(),
        (0..65536u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
    ] {
        let mut s = TcpStream::connect(master.address()).unwrap();
        let _ = s.write_all(&payload);
        drop(s);
    }

    // authenticated (CURVE) but malformed: garbage bodies, extra frames, a body that is
    // valid MessagePack of the wrong shape or nests 100,000 levels deep, a return from a
    // minion without a session, and a frame over the 8 MiB limit (libzmq drops that peer)
    let ctx = zmq::Context::new();
    let c = curve_client(&ctx, &master);
    c.send(&b"\x00\x01garbage"[..], 0).unwrap();
    c.send_multipart([&b"a"[..], b"b", b"c"], 0).unwrap();
    c.send(rmp_like_map(), 0).unwrap();
    c.send(rmp_nested(100_000), 0).unwrap();
    c.send(Vec::<u8>::new(), 0).unwrap();
    let big = curve_client(&ctx, &master);
    big.send(vec![7u8; 9 << 20], 0).unwrap();
    // the key port answers garbage requests with the key, and keeps answering
    let kp = ctx.socket(zmq::REQ).unwrap();
    kp.set_linger(0).unwrap();
    kp.set_rcvtimeo(5000).unwrap();
    kp.connect(&format!("tcp://127.0.0.1:{}", master.port - 1)).unwrap();
    kp.send(&b"\xde\xad"[..], 0).unwrap();
    let info: wire::msg::KeyInfo = wire::msg::decode(&kp.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(info.public_key.fingerprint(), info.fingerprint);

    std::thread::sleep(Duration::from_millis(300));
    let (code, v, stderr) = master.drover_json(&["*", "test.ping"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v, json!({"ok-01": true, "ok-02": true}));
    // the garblers never became minions that jobs could reach
    let (_, keys, _) = master.drover_json(&["key", "list"]);
    let ids: Vec<&str> = keys["keys"].as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    assert!(!ids.contains(&"big"), "{ids:?}");
}

/// A MessagePack map `{"v": 1, "msg": 5}`: the right envelope around the wrong message.
fn rmp_like_map() -> Vec<u8> {
    let mut v = vec![0x82, 0xa1, b'v', 0x01, 0xa3];
    v.extend(b"msg");
    v.push(0x05);
    v
}

/// `{"v": 1, "msg": [[[...1...]]]}` with `levels` arrays.
fn rmp_nested(levels: usize) -> Vec<u8> {
    let mut v = vec![0x82, 0xa1, b'v', 0x01, 0xa3];
    v.extend(b"msg");
    v.extend(std::iter::repeat_n(0x91, levels));
    v.push(0x01);
    v
}

#[test]
fn kill_9_of_the_master_loses_no_return_and_minions_come_back() {
    let mut master = Master::start(&["--auto-accept"]);
    let _m = minions(&master, "s", 10, &[]);
    master.wait_for_minions(10);

    let out = master.drover(&["--async", "*", "test.sleep", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let jid = text.split_whitespace().find(|w| w.len() == 20 && w.bytes().all(|b| b.is_ascii_digit()));
    let jid = jid.unwrap_or_else(|| panic!("no jid in {text:?}")).to_string();
    // once every minion runs the job, kill the master while they sleep
    wait_until(Duration::from_secs(20), "the job to reach all 10 minions", || {
        _m.iter().all(|m| m.log().contains(&jid))
    });
    master.kill9();
    std::thread::sleep(Duration::from_secs(2));
    master.restart();

    wait_until(Duration::from_secs(60), "all 10 returns to be stored", || {
        let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
        v["returns"].as_object().is_some_and(|r| r.len() == 10)
    });
    let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
    assert!(v["returns"].as_object().unwrap().values().all(|r| r["success"] == json!(true)), "{v}");
    // and the minions reconnected by themselves
    master.wait_for_minions(10);
}

#[test]
fn minions_reconnect_after_a_clean_master_restart() {
    let mut master = Master::start(&["--auto-accept"]);
    let mut m = Minion::start(&master, "r1", &[]);
    master.wait_for_minions(1);
    master.stop();
    std::thread::sleep(Duration::from_secs(2));
    master.restart();
    master.wait_for_minions(1);
    assert!(m.running());
}

#[test]
fn a_forged_return_from_an_unaccepted_key_is_not_stored() {
    let master = Master::start(&["--auto-accept"]);
    let _m = minions(&master, "ok", 1, &[]);
    master.wait_for_minions(1);
    let out = master.drover(&["--async", "ok-01", "test.sleep", "1.5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let jid = text
        .split_whitespace()
        .find(|w| Jid::is_valid(w))
        .unwrap_or_else(|| panic!("{}", show(&out)))
        .to_string();

    // another process, its own key, no hello: it sends a return for ok-01's job
    let ctx = zmq::Context::new();
    let forger = curve_client(&ctx, &master);
    let forged = ToMaster::Return(JobReturn {
        jid: Jid(jid.clone()),
        id: MinionId::new("ok-01").unwrap(),
        fun: "test.sleep".into(),
        success: true,
        retcode: 0,
        ret: json!("forged"),
        started_ms: 0,
        finished_ms: 0,
        killed: false,
    });
    for _ in 0..3 {
        forger.send(wire::msg::encode(&forged).unwrap(), 0).unwrap();
    }
    wait_until(Duration::from_secs(30), "the real return", || {
        let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
        v["returns"]["ok-01"].is_object()
    });
    let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
    assert_eq!(v["returns"]["ok-01"]["ret"], json!(true), "{v}");
}

fn hello(id: &str) -> Vec<u8> {
    let hello = Hello {
        id: MinionId::new(id).unwrap(),
        version: "test".into(),
        grains: Default::default(),
        generation: 0,
    };
    wire::msg::encode(&ToMaster::Hello(hello)).unwrap()
}

/// The master's answer to `s`, or None when nothing came within `ms`.
fn answer(s: &zmq::Socket, ms: i64) -> Option<ToMinion> {
    s.set_rcvtimeo(ms as i32).unwrap();
    let parts = s.recv_multipart(0).ok()?;
    Some(wire::msg::decode(parts.last()?).unwrap())
}

#[test]
fn a_connection_is_only_the_minion_its_routing_id_names() {
    let master = Master::start(&["--auto-accept"]);
    let ctx = zmq::Context::new();

    // the control: a routing id made for the id the hello names is welcomed
    let good = MinionId::new("good").unwrap();
    let good_keys = KeyPair::generate().unwrap();
    let good_route = wire::routing_id(&good).unwrap();
    let a = tests::curve_client(&ctx, &master, Some(&good_route), &good_keys);
    a.send(hello("good"), 0).unwrap();
    assert!(matches!(answer(&a, 10_000), Some(ToMinion::Welcome { .. })));

    // a routing id naming another minion, or none at all: refused, and no key recorded
    let victim_route = wire::routing_id(&MinionId::new("victim").unwrap()).unwrap();
    for (name, route) in [("intruder", Some(&victim_route[..])), ("anonymous", None)] {
        let s = curve_client_as(&ctx, &master, route);
        s.send(hello(name), 0).unwrap();
        match answer(&s, 10_000) {
            Some(ToMinion::Refused { reason }) => assert!(reason.contains("routing id"), "{reason}"),
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }

    // a second process presenting the very same routing id (as if its random part had
    // leaked) with another key: it takes the route (handover) but is refused, and the
    // session it cut into ends, so no job for "good" goes down that route any more
    let b = curve_client_as(&ctx, &master, Some(&good_route));
    b.send(hello("good"), 0).unwrap();
    match answer(&b, 10_000) {
        Some(ToMinion::Refused { reason }) => assert!(reason.contains("another key"), "{reason}"),
        other => panic!("the intruder: expected a refusal, got {other:?}\n{}", master.log()),
    }
    let (code, _, stderr) = master.drover_json(&["-L", "good", "test.ping"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not connected"), "{stderr}");

    // the real one, as drover-minion does when its master falls silent: a new socket with a
    // new routing id, and it is welcomed again
    drop((a, b));
    let a = tests::curve_client(&ctx, &master, Some(&wire::routing_id(&good).unwrap()), &good_keys);
    a.send(hello("good"), 0).unwrap();
    assert!(matches!(answer(&a, 10_000), Some(ToMinion::Welcome { .. })));

    let (_, keys, _) = master.drover_json(&["key", "list"]);
    let ids: Vec<&str> = keys["keys"].as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids, ["good"], "{keys}");
}

/// A minion's host gone without a word (power, a partition) leaves its connection open on
/// the master until the kernel's TCP keepalive ends it: the master's connections carry it.
/// (libzmq applies its keepalive options only when built knowing the platform has them,
/// which wire/build.rs tells it; it once did not, and the options did nothing.)
#[test]
fn the_master_s_minion_connections_carry_tcp_keepalive() {
    let master = Master::start(&["--auto-accept"]);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    // /proc/net/tcp: local address (hex) ends with the port, state 01 is established, and
    // the timer field `tr:when` starts with 02 while the keepalive timer is armed (01, the
    // retransmit timer, while data is unacknowledged)
    let port = format!(":{:04X}", master.port);
    let timers = || -> Vec<String> {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() > 5 && f[1].ends_with(&port) && f[3] == "01").then(|| f[5].to_string())
            })
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        "the minion's connection on the master with its keepalive timer",
        || {
            let t = timers();
            !t.is_empty() && t.iter().all(|t| t.starts_with("02:"))
        },
    );
}

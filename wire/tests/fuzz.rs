//! Property tests of `wire::msg::decode`, what both ends run on every frame a peer sends:
//! any bytes decode to a message or an error, never a panic; a message survives encoding
//! and decoding; and what decodes from a damaged frame is a message like any other (it
//! encodes and decodes to itself).
//!
//! 256 cases each in `cargo test`; `scripts/fuzz.sh` runs many more (`PROPTEST_CASES`).

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wire::msg::{
    Assignment, Blob, Converged, DaemonHealth, Event, Health, Hello, Job, JobReturn, KeyInfo, Peer, ToMaster,
    ToMinion, decode, encode,
};
use wire::{Jid, MinionId};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,8}", json(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn id() -> impl Strategy<Value = MinionId> {
    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}".prop_map(|s| MinionId::new(s).expect("a valid id"))
}

fn jid() -> impl Strategy<Value = Jid> {
    "[0-9]{20}".prop_map(Jid)
}

fn to_master() -> impl Strategy<Value = ToMaster> {
    prop_oneof![
        (id(), ".{0,10}", object(), any::<u64>()).prop_map(|(id, version, grains, generation)| {
            ToMaster::Hello(Hello { id, version, grains: grains.into_iter().collect(), generation })
        }),
        any::<u64>().prop_map(|seq| ToMaster::Heartbeat { seq }),
        (
            jid(),
            id(),
            "[a-z]{1,5}\\.[a-z]{1,5}",
            any::<bool>(),
            any::<i32>(),
            json(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(jid, id, fun, success, retcode, ret, started_ms, finished_ms)| {
                ToMaster::Return(JobReturn {
                    jid,
                    id,
                    fun,
                    success,
                    retcode,
                    ret,
                    started_ms,
                    finished_ms,
                    killed: success,
                })
            }),
        prop::collection::vec("[0-9a-f]{0,64}", 0..4).prop_map(|sha256| ToMaster::Fetch { sha256 }),
        (".{0,40}", any::<u64>(), any::<bool>(), prop::collection::vec(".{0,8}", 0..3), any::<usize>())
            .prop_map(|(commit, serial, result, failed, changed)| {
                ToMaster::Converged(Converged {
                    commit,
                    serial,
                    result,
                    failed,
                    changed,
                    ..Converged::default()
                })
            }),
        (".{0,30}", json(), any::<u64>()).prop_map(|(tag, data, time_ms)| ToMaster::Event(Event {
            tag,
            data,
            time_ms
        })),
        (any::<bool>(), prop::option::of(".{0,20}"), prop::collection::vec(daemon_health(), 0..3))
            .prop_map(|(healthy, problem, daemons)| ToMaster::Health(Health { healthy, problem, daemons })),
    ]
}

fn daemon_health() -> impl Strategy<Value = DaemonHealth> {
    (".{0,10}", ".{0,10}", any::<bool>(), prop::option::of(".{0,20}"))
        .prop_map(|(name, state, healthy, problem)| DaemonHealth { name, state, healthy, problem })
}

fn to_minion() -> impl Strategy<Value = ToMinion> {
    let peer = (".{0,8}", ".{0,15}", object()).prop_map(|(id, address, grains)| Peer { id, address, grains });
    prop_oneof![
        any::<u64>().prop_map(|heartbeat_ms| ToMinion::Welcome { heartbeat_ms }),
        Just(ToMinion::Pending),
        ".{0,40}".prop_map(|reason| ToMinion::Refused { reason }),
        Just(ToMinion::Rehello),
        any::<u64>().prop_map(|seq| ToMinion::HeartbeatAck { seq }),
        (
            jid(),
            "[a-z]{1,5}\\.[a-z]{1,5}",
            prop::collection::vec(json(), 0..3),
            object(),
            any::<Option<u64>>()
        )
            .prop_map(|(jid, fun, args, kwargs, timeout_ms)| {
                ToMinion::Job(Job { jid, fun, args, kwargs: kwargs.into_iter().collect(), timeout_ms })
            }),
        jid().prop_map(|jid| ToMinion::Ack { jid }),
        (
            ".{0,40}",
            any::<u64>(),
            prop::collection::vec("[a-z]{1,8}", 0..3),
            prop::collection::btree_map(".{0,20}", "[0-9a-f]{64}", 0..3),
            object(),
            prop::collection::btree_map("[a-z]{1,8}", prop::collection::vec(peer, 0..2), 0..2),
        )
            .prop_map(|(commit, serial, roles, files, pillar, peers)| {
                ToMinion::Assign(Assignment { commit, serial, roles, files, pillar, peers })
            }),
        (
            prop::collection::vec(("[0-9a-f]{64}", prop::collection::vec(any::<u8>(), 0..64)), 0..3),
            prop::collection::vec("[0-9a-f]{0,64}", 0..3),
        )
            .prop_map(|(blobs, missing)| ToMinion::Files {
                blobs: blobs.into_iter().map(|(sha256, data)| Blob { sha256, data }).collect(),
                missing,
            }),
        any::<u64>().prop_map(|by| ToMinion::Superseded { by }),
    ]
}

/// One change to a frame.
#[derive(Clone, Debug)]
enum Edit {
    /// Replace the byte at a place with another.
    Set(Index, u8),
    /// Insert bytes at a place: often a MessagePack marker (an array or map header, a long
    /// string length, a nil) so that the frame stays nearly well formed.
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
    /// Repeat a stretch of the frame after itself.
    Repeat(Index, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let markers: Vec<Vec<u8>> = vec![
        vec![0x91],
        vec![0x81],
        vec![0x80],
        vec![0x90],
        vec![0xc0],
        vec![0xdc, 0xff, 0xff],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0xdf, 0x7f, 0xff, 0xff, 0xff],
        vec![0xdb, 0xff, 0xff, 0xff, 0xf0],
        vec![0xc6, 0x00, 0x10, 0x00, 0x00],
        vec![0xcb],
        vec![0xd9, 0x05],
        vec![0xa4, b't', b'y', b'p', b'e'],
        vec![0xa1, b'v'],
        vec![0xa3, b'm', b's', b'g'],
    ];
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<Index>(), select(markers)).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<Index>(), 1..16usize).prop_map(|(at, n)| Edit::Remove(at, n)),
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 1..32usize, 1..64usize).prop_map(|(at, len, times)| Edit::Repeat(at, len, times)),
    ]
}

fn apply(frame: &mut Vec<u8>, edit: &Edit) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
    match edit {
        Edit::Set(i, b) if !frame.is_empty() => {
            let i = i.index(frame.len());
            frame[i] = *b;
        }
        Edit::Set(..) => {}
        Edit::Insert(i, bytes) => {
            let i = at(i, frame.len());
            frame.splice(i..i, bytes.iter().copied());
        }
        Edit::Remove(i, n) => {
            let i = at(i, frame.len());
            frame.drain(i..(i + n).min(frame.len()));
        }
        Edit::Truncate(i) => frame.truncate(at(i, frame.len())),
        Edit::Repeat(i, len, times) => {
            let i = at(i, frame.len());
            let stretch = frame[i..(i + len).min(frame.len())].to_vec();
            let copies = stretch.repeat(*times);
            frame.splice(i..i, copies);
        }
    }
}

/// Decoding gives a message or an error; a message encodes and decodes to itself.
fn decodes_sanely<T>(frame: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match decode::<T>(frame) {
        Ok(msg) => {
            let again =
                encode(&msg).map_err(|e| TestCaseError::fail(format!("{msg:?} does not encode: {e}")))?;
            prop_assert_eq!(decode::<T>(&again), Ok(msg));
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

fn decodes_every_way(frame: &[u8]) -> Result<(), TestCaseError> {
    decodes_sanely::<ToMaster>(frame)?;
    decodes_sanely::<ToMinion>(frame)?;
    decodes_sanely::<KeyInfo>(frame)
}

/// MessagePack headers and scalars in any order: frames of nearly the right shape.
fn msgpack_soup() -> impl Strategy<Value = Vec<u8>> {
    let parts: Vec<&'static [u8]> = vec![
        &[0x82, 0xa1, b'v', 0x01, 0xa3, b'm', b's', b'g'],
        &[0x81],
        &[0x82],
        &[0x84],
        &[0x91],
        &[0x92],
        &[0x90],
        &[0x80],
        &[0xc0],
        &[0xc2],
        &[0xc3],
        &[0x01],
        &[0xff],
        &[0xcc, 0xff],
        &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
        &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
        &[0xa0],
        &[0xa4, b't', b'y', b'p', b'e'],
        &[0xa5, b'h', b'e', b'l', b'l', b'o'],
        &[0xa6, b'r', b'e', b't', b'u', b'r', b'n'],
        &[0xa6, b'a', b's', b's', b'i', b'g', b'n'],
        &[0xa5, b'f', b'i', b'l', b'e', b's'],
        &[0xa2, b'i', b'd'],
        &[0xa3, b'j', b'i', b'd'],
        &[0xa4, b'd', b'a', b't', b'a'],
        &[0xa2, 0xc3, 0x28],
        &[0xc4, 0x02, 0xde, 0xad],
        &[0xd4, 0x01, 0x00],
        &[0xdc, 0x00, 0x03],
        &[0xde, 0x00, 0x02],
    ];
    prop::collection::vec(select(parts), 0..48).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn fuzz_messages_round_trip(m in to_master(), n in to_minion()) {
        prop_assert_eq!(decode::<ToMaster>(&encode(&m).unwrap()), Ok(m));
        prop_assert_eq!(decode::<ToMinion>(&encode(&n).unwrap()), Ok(n));
    }

    #[test]
    fn fuzz_damaged_frames_decode_to_a_message_or_an_error(
        m in to_master(),
        n in to_minion(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        for mut frame in [encode(&m).unwrap(), encode(&n).unwrap()] {
            for edit in &edits {
                apply(&mut frame, edit);
            }
            decodes_every_way(&frame)?;
        }
    }

    #[test]
    fn fuzz_any_bytes_decode_to_a_message_or_an_error(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..512), msgpack_soup()],
    ) {
        decodes_every_way(&bytes)?;
    }
}

#[test]
fn fuzz_strategies_make_both_sides_messages() {
    // the strategies above are what the properties see: check they build every kind
    let kinds = |names: Vec<String>| names.into_iter().collect::<std::collections::BTreeSet<_>>().len();
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = (Vec::new(), Vec::new());
    for _ in 0..500 {
        let m = to_master().new_tree(&mut runner).unwrap().current();
        let n = to_minion().new_tree(&mut runner).unwrap().current();
        let tag = |v: Value| v["type"].as_str().unwrap_or("").to_string();
        seen.0.push(tag(serde_json::to_value(&m).unwrap()));
        seen.1.push(tag(serde_json::to_value(&n).unwrap()));
    }
    assert_eq!((kinds(seen.0), kinds(seen.1)), (7, 10));
}

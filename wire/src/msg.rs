//! Messages between master and minion, and their framing.
//!
//! Every ZeroMQ message body is one [`Envelope`]: a protocol version and a message, encoded
//! as MessagePack with field names (so fields can be added with `#[serde(default)]` without
//! breaking older peers). A body larger than [`MAX_FRAME`] is refused before decoding; the
//! master also sets `ZMQ_MAXMSGSIZE` so libzmq drops such a peer before reading it whole.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Jid, MinionId, PublicKey};

/// The protocol version both ends speak; a message with another version is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest message body either end accepts (8 MiB).
pub const MAX_FRAME: usize = 8 << 20;

/// The largest message the master reads from a connection before it has a session (a hello
/// with its grains); a larger one is refused undecoded, the minion told why.
pub const MAX_HELLO: usize = 256 << 10;

/// The largest output one job may return; longer outputs are cut (and say so).
pub const MAX_OUTPUT: usize = 1 << 20;

/// How deep arrays and maps may nest in a frame, the envelope's two levels included. A
/// deeper frame is refused while it is decoded, before it can exhaust the stack of the
/// thread decoding it (a level costs a few KiB there in a debug build). What travels nests
/// far less: serde_json and serde_yaml refuse documents deeper than 128 levels too.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("frame nests arrays and maps deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("protocol version {got} not supported (this build speaks {PROTOCOL_VERSION})")]
    Version { got: u16 },
    #[error("cannot encode message: {0}")]
    Encode(String),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u16,
    msg: T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}

/// Encodes a message into one frame body.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let bytes = rmp_serde::to_vec_named(&Envelope { v: PROTOCOL_VERSION, msg })
        .map_err(|e| WireError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes one frame body, checking its size and protocol version.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_FRAME {
        return Err(WireError::TooLarge(bytes.len()));
    }
    match bounded::<Envelope<T>>(bytes) {
        Ok(env) if env.v == PROTOCOL_VERSION => Ok(env.msg),
        Ok(env) => Err(WireError::Version { got: env.v }),
        Err(rmp_serde::decode::Error::DepthLimitExceeded) => Err(WireError::TooDeep),
        Err(e) => match bounded::<VersionOnly>(bytes) {
            Ok(VersionOnly { v }) if v != PROTOCOL_VERSION => Err(WireError::Version { got: v }),
            _ => Err(WireError::Decode(e.to_string())),
        },
    }
}

/// `rmp_serde::from_slice` with at most [`MAX_DEPTH`] levels of nesting.
fn bounded<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    // the count is of levels left, and reaching 0 is an error
    de.set_max_depth(MAX_DEPTH + 1);
    T::deserialize(&mut de)
}

/// Grains: facts a minion reports about itself.
pub type Grains = BTreeMap<String, Value>;

/// Minion → master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToMaster {
    /// First message on every (re)connection, and the answer to [`ToMinion::Rehello`].
    Hello(Hello),
    /// Sent every heartbeat interval; the master answers [`ToMinion::HeartbeatAck`].
    Heartbeat { seq: u64 },
    /// A job's result; resent until the master answers [`ToMinion::Ack`].
    Return(JobReturn),
    /// Asks for files by sha256 (hex); the master answers [`ToMinion::Files`], serving only
    /// hashes in this minion's current assignment.
    Fetch { sha256: Vec<String> },
    /// The outcome of applying an assignment.
    Converged(Converged),
    /// Something happened on the minion (a daemon crashed, restarted, changed health...).
    Event(Event),
    /// The minion's own verdict on itself; sent after every [`ToMinion::Welcome`] and
    /// whenever it changes.
    Health(Health),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub id: MinionId,
    /// The minion's drover version.
    pub version: String,
    pub grains: Grains,
    /// Which container of the minion's slot this is (`DROVER_GENERATION`; 0 outside a
    /// fleet). Of two live connections for one id, the higher generation has the session;
    /// the other is answered [`ToMinion::Superseded`].
    #[serde(default)]
    pub generation: u64,
}

/// What a minion says of itself: its last apply of its current assignment succeeded and
/// every daemon it supervises runs and passes its health check (the verdict
/// `drover-minion health` gives Docker's HEALTHCHECK, minus the link to the master, which
/// the master knows).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub healthy: bool,
    /// Why not, in one line (`daemon worker: exited with code 1 (restarting)`).
    #[serde(default)]
    pub problem: Option<String>,
    /// Every supervised daemon, in start order.
    #[serde(default)]
    pub daemons: Vec<DaemonHealth>,
}

/// One supervised daemon in a [`Health`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonHealth {
    pub name: String,
    /// `starting`, `running`, `backoff`, `stopping`, `stopped` or `failed`.
    pub state: String,
    /// Running and passing its health check (if it has one); a daemon stopped on purpose
    /// counts as healthy.
    pub healthy: bool,
    /// Why not, in one line (`exited with code 1 (restarting)`).
    #[serde(default)]
    pub problem: Option<String>,
}

/// Master → minion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToMinion {
    /// The minion's key is accepted: it will receive jobs. Heartbeat every `heartbeat_ms`.
    Welcome {
        heartbeat_ms: u64,
    },
    /// The minion's key waits in `pending/` for `drover key accept`.
    Pending,
    /// The master will not talk to this minion (rejected key, or another key for its id).
    Refused {
        reason: String,
    },
    /// The master does not know this connection (it restarted): send [`ToMaster::Hello`].
    Rehello,
    HeartbeatAck {
        seq: u64,
    },
    Job(Job),
    /// The return for `jid` is stored; stop resending it.
    Ack {
        jid: Jid,
    },
    /// The roles this minion has and everything it needs to render and apply them.
    Assign(Assignment),
    /// A connection of a higher generation has this minion's session (another container of
    /// its slot): no jobs come here. The minion keeps its daemons running and says hello
    /// again every few seconds, to be the minion again once that connection is gone.
    Superseded {
        by: u64,
    },
    /// Answer to [`ToMaster::Fetch`]: the files found, and the hashes the master will not
    /// serve (unknown, or not in this minion's assignment).
    Files {
        blobs: Vec<Blob>,
        missing: Vec<String>,
    },
    /// End job `jid` (`drover jobs kill`): the minion aborts it, which kills its process
    /// group, and returns it as killed. A minion that has no such job running and no return
    /// for it answers with a failed return saying so, so that the master stops counting it
    /// busy. `fun` names the job's function in that answer.
    Kill {
        jid: Jid,
        fun: String,
    },
}

/// A role assignment, pushed on `drover roles apply`, to every minion that connects, and
/// again when the peers of a role change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The config repo's commit (full hex) the files come from.
    pub commit: String,
    /// Increases with every assignment the master sends this minion; echoed in [`Converged`].
    pub serial: u64,
    /// Role names, in the order they were given.
    pub roles: Vec<String>,
    /// Repo path → sha256 (hex) of each file the minion needs: `roles/<role>.yaml` for each
    /// of its roles, their state files, and the template sources those name.
    pub files: BTreeMap<String, String>,
    /// Pillar of this minion alone, merged over its roles' pillars (which are in the role files).
    #[serde(default)]
    pub pillar: serde_json::Map<String, Value>,
    /// Role name → its connected, converged members.
    #[serde(default)]
    pub peers: BTreeMap<String, Vec<Peer>>,
}

/// Another minion, as templates see it in `peers.<role>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub id: String,
    /// Its first IPv4 address, as its grains say.
    pub address: String,
    #[serde(default)]
    pub grains: serde_json::Map<String, Value>,
}

/// A file's content, named by its sha256 (hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blob {
    pub sha256: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// What a minion reports after applying an assignment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Converged {
    pub commit: String,
    pub serial: u64,
    /// Every state succeeded (and no role waits for another).
    pub result: bool,
    /// Ids of the states that failed.
    pub failed: Vec<String>,
    /// How many states changed something.
    pub changed: usize,
    /// Roles named in `requires` that have no converged member yet; daemons wait for them.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// A one-line account for `drover roles status` (first error, or what it waits for).
    #[serde(default)]
    pub comment: String,
}

/// An event from a minion. Tags are paths relative to the minion: `daemon/<name>/crashed`,
/// `daemon/<name>/restarted`, `daemon/<name>/health`, ... The master files them under the
/// minion's own namespace, `drover/minion/<id>/<tag>`, so no minion event can pass for one
/// of the master's (`drover/key/...`, `drover/minion/connected`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub tag: String,
    pub data: Value,
    pub time_ms: u64,
}

/// The sha256 (hex) of `data`, as [`Blob`]s and [`Assignment::files`] name contents.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// One state's result, as `state.apply` returns it (Salt's shape). A `state.apply` return
/// is a map from `"<module>_|-<id>_|-<name>_|-<function>"` to this.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateResult {
    /// The state's id (the YAML key).
    #[serde(rename = "__id__")]
    pub id: String,
    /// `file.managed`, `daemon.running`, ...
    pub function: String,
    pub name: String,
    /// true: done (or nothing to do); false: failed; null: would change (`test=true`).
    pub result: Option<bool>,
    pub comment: String,
    /// What changed (`{}` when nothing did); `file.managed` carries a unified `diff`.
    pub changes: Value,
    /// Milliseconds spent.
    pub duration: f64,
    /// Position in the apply order.
    #[serde(rename = "__run_num__")]
    pub run_num: usize,
}

impl StateResult {
    /// The key of this result in a `state.apply` return.
    pub fn key(&self) -> String {
        let module = self.function.split('.').next().unwrap_or("");
        let fun = self.function.split('.').nth(1).unwrap_or("");
        format!("{module}_|-{}_|-{}_|-{fun}", self.id, self.name)
    }
}

/// One targeted function call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub jid: Jid,
    pub fun: String,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: BTreeMap<String, Value>,
    /// How long the caller waits; functions with their own timeout may use it as a default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// One minion's result for one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReturn {
    pub jid: Jid,
    pub id: MinionId,
    pub fun: String,
    /// Whether the function did what was asked (`cmd.run`: exit status 0).
    pub success: bool,
    /// 0 on success; the command's exit status for `cmd.run`; 1 for other failures.
    pub retcode: i32,
    /// What the function returned, or a message saying why it failed.
    pub ret: Value,
    /// When the minion started and finished the job, in ms since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: u64,
    /// A kill ended the job (`ToMinion::Kill`, `saltutil.kill_job`), or answered for it on a
    /// minion that did not run it: the master records the job killed.
    #[serde(default)]
    pub killed: bool,
}

/// What the master's key port (the listen port − 1, no encryption) answers, so a minion can
/// pin the master's key on first use. The key is public; trusting it is the minion's choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub public_key: PublicKey,
    pub fingerprint: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_return() -> ToMaster {
        ToMaster::Return(JobReturn {
            jid: Jid::generate(),
            id: MinionId::new("m1").unwrap(),
            fun: "cmd.run".into(),
            success: false,
            retcode: 3,
            ret: json!({"stdout": "x", "retcode": 3}),
            started_ms: 1,
            finished_ms: 2,
            killed: false,
        })
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            sample_return(),
            ToMaster::Heartbeat { seq: 7 },
            ToMaster::Hello(Hello {
                id: MinionId::new("m1").unwrap(),
                version: "0.0.0".into(),
                grains: [("os".to_string(), json!("Debian"))].into(),
                generation: 3,
            }),
            ToMaster::Health(Health {
                healthy: false,
                problem: Some("daemon worker: exited with code 1 (restarting)".into()),
                daemons: vec![DaemonHealth {
                    name: "worker".into(),
                    state: "backoff".into(),
                    healthy: false,
                    problem: Some("exited with code 1 (restarting)".into()),
                }],
            }),
        ];
        for m in msgs {
            assert_eq!(decode::<ToMaster>(&encode(&m).unwrap()).unwrap(), m);
        }
        let job = ToMinion::Job(Job {
            jid: Jid::generate(),
            fun: "test.echo".into(),
            args: vec![json!("hi")],
            kwargs: BTreeMap::new(),
            timeout_ms: Some(5000),
        });
        assert_eq!(decode::<ToMinion>(&encode(&job).unwrap()).unwrap(), job);
        let superseded = ToMinion::Superseded { by: 7 };
        assert_eq!(decode::<ToMinion>(&encode(&superseded).unwrap()).unwrap(), superseded);
        let kill = ToMinion::Kill { jid: Jid::generate(), fun: "cmd.run".into() };
        assert_eq!(decode::<ToMinion>(&encode(&kill).unwrap()).unwrap(), kill);
    }

    #[test]
    fn fields_added_later_have_defaults() {
        // a hello from a minion that predates generations, a health with only its verdict
        let hello = json!({"type": "hello", "id": "m1", "version": "0.0.0", "grains": {}});
        let health = json!({"type": "health", "healthy": true});
        for (msg, want) in [
            (
                hello,
                ToMaster::Hello(Hello {
                    id: MinionId::new("m1").unwrap(),
                    version: "0.0.0".into(),
                    grains: Grains::new(),
                    generation: 0,
                }),
            ),
            (health, ToMaster::Health(Health { healthy: true, problem: None, daemons: Vec::new() })),
        ] {
            let bytes = rmp_serde::to_vec_named(&json!({"v": PROTOCOL_VERSION, "msg": msg})).unwrap();
            assert_eq!(decode::<ToMaster>(&bytes).unwrap(), want);
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let good = encode(&sample_return()).unwrap();
        for cut in 0..good.len() {
            assert!(decode::<ToMaster>(&good[..cut]).is_err(), "truncated at {cut}");
        }
        assert!(matches!(decode::<ToMaster>(b"\xff\x00garbage"), Err(WireError::Decode(_))));
        assert_eq!(decode::<ToMaster>(&vec![0u8; MAX_FRAME + 1]), Err(WireError::TooLarge(MAX_FRAME + 1)));
        // a message for another side is refused too
        assert!(decode::<ToMinion>(&good).is_err());
    }

    /// An event whose data is `levels` arrays around `1`, written byte by byte (a value that
    /// deep could not be built, nor dropped, without recursing as deep).
    fn nested_event(levels: usize) -> Vec<u8> {
        let mut frame = vec![0x82, 0xa1, b'v', PROTOCOL_VERSION as u8, 0xa3, b'm', b's', b'g', 0x84];
        for (key, value) in [("type", Some("event")), ("tag", Some("t")), ("data", None)] {
            frame.push(0xa0 | key.len() as u8);
            frame.extend(key.bytes());
            if let Some(value) = value {
                frame.push(0xa0 | value.len() as u8);
                frame.extend(value.bytes());
            }
        }
        frame.extend(std::iter::repeat_n(0x91, levels)); // an array of one element
        frame.push(0x01);
        frame.push(0xa7);
        frame.extend(b"time_ms");
        frame.push(0x01);
        frame
    }

    #[test]
    fn deeply_nested_frames_are_refused_not_a_stack_overflow() {
        // on a thread with the stack the daemons' threads have
        let decoded = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                // the envelope and the message are two of the levels
                let event = decode::<ToMaster>(&nested_event(MAX_DEPTH - 2)).map(|_| ());
                let deep: Vec<_> = [MAX_DEPTH - 1, 1_000, 100_000, MAX_FRAME - 100]
                    .into_iter()
                    .map(|levels| {
                        let frame = nested_event(levels);
                        (decode::<ToMaster>(&frame).map(|_| ()), decode::<ToMinion>(&frame).is_err())
                    })
                    .collect();
                (event, deep)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(decoded.0, Ok(()));
        for (to_master, to_minion_refused) in decoded.1 {
            assert_eq!(to_master, Err(WireError::TooDeep));
            assert!(to_minion_refused);
        }
        assert_eq!(WireError::TooDeep.to_string(), "frame nests arrays and maps deeper than 128 levels");
    }

    #[test]
    fn other_versions_are_named() {
        #[derive(Serialize)]
        struct Future {
            v: u16,
            msg: u8,
        }
        let bytes = rmp_serde::to_vec_named(&Future { v: 9, msg: 1 }).unwrap();
        assert_eq!(decode::<ToMaster>(&bytes), Err(WireError::Version { got: 9 }));
    }

    #[test]
    fn bad_ids_in_frames_are_refused() {
        let m = ToMaster::Heartbeat { seq: 1 };
        let mut v = serde_json::to_value(&m).unwrap();
        v["type"] = json!("hello");
        v["id"] = json!("../etc");
        v["version"] = json!("x");
        v["grains"] = json!({});
        let bytes = rmp_serde::to_vec_named(&json!({"v": PROTOCOL_VERSION, "msg": v})).unwrap();
        assert!(decode::<ToMaster>(&bytes).is_err());
    }
}

//! dockercoins, the demo cloud's app: four small services in one binary (`coins <service>`).
//! A worker asks rng for random bytes, makes a nonce of them, asks hasher for the nonce's
//! sha256, and counts hashes and coins (hashes that start with `0`) in redis; webui shows
//! the counts, the rates and which versions mine.
//!
//! **One source tree, two releases.** The demo upgrades the fleet from 1.0 to 1.1, and 1.1
//! fixes a real bug of 1.0 (coins found again and again, see [`mining::Seeding`]). The fix
//! is a cargo feature, `fixed-seed`, chosen when the binary is built, and the version is
//! `COINS_VERSION` at build time ([`VERSION`]): an image holds one release for good, as a
//! patch release would, rather than a switch read at run time that a config change could
//! flip without a rollout. The code keeps both paths, each a function parameter, so one
//! test build covers both.
//!
//! - `config`: the worker's and the webui's TOML, as `states/coins/*.toml` render it
//! - `mining`: the nonce (1.0's bug and 1.1's fix) and the coin rule
//! - `rate`: hashes per second and the duplicate rate, from what redis keeps
//! - `resp`: the redis protocol (RESP2), encoded and parsed by hand
//! - `redis`: a redis client over `resp` that fails over between addresses
//! - `store`: the keys the workers write in redis and the webui reads
//! - `http`: serving until shutdown, and a small HTTP/1 client
//! - `rng`, `hasher`, `worker`, `webui`: the four services

pub mod config;
pub mod hasher;
pub mod http;
pub mod mining;
pub mod rate;
pub mod redis;
pub mod resp;
pub mod rng;
pub mod store;
pub mod webui;
pub mod worker;

/// This build's version: `COINS_VERSION` when it was built (`1.0`, `1.1`), else `dev`.
pub const VERSION: &str = match option_env!("COINS_VERSION") {
    Some(v) => v,
    None => "dev",
};

/// Milliseconds since the Unix epoch: the time workers stamp in redis.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

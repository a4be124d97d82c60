//! The seam between the functions and states that change the host itself (`pkg.*`,
//! `service.*`, `user.present`, `group.present`) and the host: the files they read, under
//! [`Host::root`], and the commands they run, through a [`Runner`]. Tests give a temporary
//! root and a [`Runner`] that records each argv, so they never install a package, start a
//! service or add a user for real.
//!
//! Also the rule that keeps these off fleet containers: a container's packages, services
//! and accounts come from its image, and a change made inside one is lost when it is
//! replaced ([`refuse_in_fleet`]).

use std::future::Future;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::cmd::{Command, Ran, Streams};

/// Runs a program to its end.
pub(crate) trait Runner: Send + Sync {
    /// Runs `argv` with `env` added to the minion's environment: its exit status and
    /// output (stderr merged), or why it could not start.
    fn run(&self, argv: &[&str], env: &[(&str, &str)]) -> impl Future<Output = Result<Ran, String>> + Send;
}

/// Runs programs for real, through the `cmd.*` functions' [`Command`] (so the reaper
/// never takes their exit status).
pub(crate) struct System;

impl Runner for System {
    async fn run(&self, argv: &[&str], env: &[(&str, &str)]) -> Result<Ran, String> {
        let command = Command {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            cwd: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            timeout: None,
            stdin: None,
            runas: None,
        };
        command.run(Streams::Merged).await.map_err(|e| e.message)
    }
}

/// The host: where its files are, and how its programs run.
pub(crate) struct Host<R = System> {
    /// `/` for real; the files read are `var/lib/dpkg/status`, `etc/passwd`, `etc/group`,
    /// and `run/systemd/system` (a directory when systemd is the init system).
    pub root: PathBuf,
    pub runner: R,
}

impl Host {
    /// The host this minion runs on.
    pub fn real() -> Self {
        Host { root: PathBuf::from("/"), runner: System }
    }
}

impl<R: Runner> Host<R> {
    /// `path` (absolute, as on a real host) under [`Host::root`].
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Runs `argv`; a non-zero exit is an error with the end of its output.
    pub async fn check(&self, argv: &[&str], env: &[(&str, &str)]) -> Result<Ran, String> {
        let ran = self.runner.run(argv, env).await?;
        if ran.retcode == 0 {
            return Ok(ran);
        }
        let tail: Vec<&str> = ran.stdout.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("`{}` exited {}: {}", argv.join(" "), ran.retcode, tail.join("\n")))
    }
}

/// [`refuse_in_fleet`] for a state, from the grains of its render context.
pub(crate) fn refuse_state_in_fleet(grains: &Map<String, Value>, what: &str) -> Option<String> {
    refuse_in_fleet(grains.get("fleet"), grains.get("image"), what)
}

/// [`refuse_in_fleet`] for a call, as its failed return.
pub(crate) fn refuse_call_in_fleet(call: &super::Call) -> Option<super::Outcome> {
    refuse_in_fleet(call.grains.get("fleet"), call.grains.get("image"), &call.fun).map(super::Outcome::fail)
}

/// `Some(message)` when the minion is a fleet container (its grains name a `fleet` or an
/// `image`): `what` (e.g. "pkg.install") would change the container, not its image, and
/// the change would be lost when the fleet replaces it.
pub(crate) fn refuse_in_fleet(fleet: Option<&Value>, image: Option<&Value>, what: &str) -> Option<String> {
    let named = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let this = match (named(fleet), named(image)) {
        (None, None) => return None,
        (Some(fleet), Some(image)) => format!("a container of fleet {fleet} (image {image})"),
        (Some(fleet), None) => format!("a container of fleet {fleet}"),
        (None, Some(image)) => format!("a container of image {image}"),
    };
    Some(format!(
        "{what} is not available in a fleet container: this minion is {this}, and a change made \
         inside it is lost when the fleet replaces it; change the image instead (packages in \
         images/base/base.yaml or the image's Dockerfile), build it, and roll the fleet out"
    ))
}

#[cfg(test)]
pub(crate) mod fake {
    use std::sync::Mutex;

    use super::*;

    /// An argv run, and the environment it got.
    pub type Call = (Vec<String>, Vec<(String, String)>);
    /// What a fake program does to the fake host.
    pub type Effect = Box<dyn Fn(&[&str]) + Send + Sync>;

    /// Records every argv (with its environment) and answers with `retcode`; `then` runs
    /// after each call, to change the fake host as the real program would.
    pub struct Recorder {
        pub calls: Mutex<Vec<Call>>,
        pub retcode: i32,
        pub stdout: String,
        pub then: Effect,
    }

    impl Recorder {
        pub fn new(then: impl Fn(&[&str]) + Send + Sync + 'static) -> Self {
            Recorder {
                calls: Mutex::new(Vec::new()),
                retcode: 0,
                stdout: String::new(),
                then: Box::new(then),
            }
        }

        /// Each argv run, as one line.
        pub fn argvs(&self) -> Vec<String> {
            self.calls.lock().unwrap().iter().map(|(argv, _)| argv.join(" ")).collect()
        }
    }

    impl Runner for Recorder {
        async fn run(&self, argv: &[&str], env: &[(&str, &str)]) -> Result<Ran, String> {
            self.calls.lock().unwrap().push((
                argv.iter().map(|a| a.to_string()).collect(),
                env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ));
            (self.then)(argv);
            Ok(Ran {
                pid: Some(1),
                retcode: self.retcode,
                stdout: self.stdout.clone(),
                stderr: String::new(),
            })
        }
    }

    pub fn host(then: impl Fn(&[&str]) + Send + Sync + 'static) -> (tempfile::TempDir, Host<Recorder>) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host { root: dir.path().to_path_buf(), runner: Recorder::new(then) };
        (dir, host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fleet_containers_are_told_to_change_the_image() {
        let grains = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            refuse_state_in_fleet(&grains(json!({"os": "Debian", "image": null})), "pkg.install"),
            None
        );
        let msg = refuse_state_in_fleet(&grains(json!({"fleet": "coins", "image": "coins"})), "pkg.install")
            .unwrap();
        assert!(msg.starts_with("pkg.install is not available in a fleet container"), "{msg}");
        assert!(msg.contains("a container of fleet coins (image coins)"), "{msg}");
        assert!(msg.contains("change the image instead"), "{msg}");
        assert!(refuse_state_in_fleet(&grains(json!({"image": "web"})), "x").unwrap().contains("image web"));
    }
}

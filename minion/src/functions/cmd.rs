//! `cmd.run`: runs a program, without a shell unless asked, and returns its output.
//!
//! The arguments are the argv; a single string is split like a shell would split words
//! (no expansion). `shell=true` runs `/bin/sh -c "<the arguments joined>"` instead. The
//! program gets its own process group, so a timeout kills everything it started.
//! `runas=USER` runs it as that user (with the user's groups, `HOME`, `USER`, `LOGNAME`,
//! `SHELL`); only a minion running as root can do that. Children are started through
//! [`reaper::spawn`], so the reaper never takes their exit status.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wire::msg::MAX_OUTPUT;

use super::{BoxFuture, Call, Outcome, arity, boolean, known_kwargs, scalar_string, seconds};
use crate::reaper;
use crate::runas::Account;

const USAGE: &str = "cmd.run <command line> | cmd.run <program> <arg>... \
                     [shell=true] [cwd=DIR] [env={K: V}] [timeout=SECS] [stdin=TEXT] [runas=USER]";
const KWARGS: &[&str] = &["shell", "cwd", "env", "timeout", "stdin", "runas"];

/// The retcode of a command killed on timeout, as timeout(1) reports it.
pub const TIMEOUT_RETCODE: i32 = 124;
/// How long output is still read after the command exited (a background process it left
/// behind may hold its output open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run, checked before anything starts.
#[derive(Debug, PartialEq)]
struct Spec {
    argv: Vec<String>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    stdin: Option<String>,
    runas: Option<Account>,
}

pub fn run(call: Call) -> BoxFuture {
    Box::pin(async move {
        match Spec::from_call(&call) {
            Ok(spec) => spec.run().await,
            Err(o) => o,
        }
    })
}

impl Spec {
    fn from_call(call: &Call) -> Result<Self, Outcome> {
        arity(call, 1..=usize::MAX, USAGE)?;
        known_kwargs(call, KWARGS, USAGE)?;
        let fail = |what: String| Outcome::fail(format!("cmd.run: {what}; usage: {USAGE}"));
        let kw = &call.kwargs;

        let shell = match kw.get("shell") {
            None => false,
            Some(v) => boolean(v).ok_or_else(|| fail(format!("shell= expects true or false, got {v}")))?,
        };
        let mut words = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            words.push(
                scalar_string(arg)
                    .ok_or_else(|| fail(format!("arguments must be strings or numbers, got {arg}")))?,
            );
        }
        let argv = if shell {
            vec!["/bin/sh".to_string(), "-c".to_string(), words.join(" ")]
        } else if words.len() == 1 {
            shlex::split(&words[0])
                .ok_or_else(|| fail(format!("cannot split {:?} into words: unbalanced quotes", words[0])))?
        } else {
            words
        };
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(fail("expected a program to run, got an empty command".into()));
        }
        if let Some(bad) = argv.iter().find(|a| a.contains('\0')) {
            return Err(fail(format!("argument {bad:?} contains a NUL byte")));
        }

        let cwd = match kw.get("cwd") {
            None => None,
            Some(Value::String(dir)) => {
                let dir = PathBuf::from(dir);
                if !dir.is_dir() {
                    return Err(fail(format!("cwd={} is not an existing directory", dir.display())));
                }
                Some(dir)
            }
            Some(v) => return Err(fail(format!("cwd= expects a directory path, got {v}"))),
        };
        let env = match kw.get("env") {
            None => Vec::new(),
            Some(Value::Object(map)) => {
                let mut env = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let value = scalar_string(v).filter(|v| !v.contains('\0'));
                    match value {
                        Some(value) if !k.is_empty() && !k.contains(['=', '\0']) => {
                            env.push((k.clone(), value))
                        }
                        _ => {
                            return Err(fail(format!(
                                "env= expects NAME: value pairs of strings, got {k}: {v}"
                            )));
                        }
                    }
                }
                env
            }
            Some(v) => return Err(fail(format!("env= expects a map of NAME: value, got {v}"))),
        };
        let timeout = match kw.get("timeout") {
            None => None,
            Some(v) => match seconds(v) {
                Some(d) if !d.is_zero() => Some(d),
                _ => return Err(fail(format!("timeout= expects a number of seconds above 0, got {v}"))),
            },
        };
        let stdin = match kw.get("stdin") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(fail(format!("stdin= expects a string, got {v}"))),
        };
        let runas = match kw.get("runas") {
            None => None,
            Some(Value::String(user)) if !user.is_empty() => {
                let account = Account::lookup(user).and_then(|a| a.check().map(|()| a));
                Some(account.map_err(|e| fail(format!("runas={user}: {e}")))?)
            }
            Some(v) => return Err(fail(format!("runas= expects a user name, got {v}"))),
        };
        Ok(Self { argv, cwd, env, timeout, stdin, runas })
    }

    async fn run(self) -> Outcome {
        let program = &self.argv[0];
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&self.argv[1..])
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(account) = &self.runas {
            // the user's HOME etc. first, so that env= can still override them
            if let Err(e) = account.apply(cmd.as_std_mut()) {
                return Outcome::fail(format!("cmd.run: {e}"));
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = match reaper::spawn(&mut cmd) {
            Ok(child) => child,
            Err(e) => return spawn_failure(program, &e),
        };
        let pid = child.id();
        // if this job is dropped (the minion stops), take the whole group down with it
        let mut group = GroupGuard(pid.map(|p| Pid::from_raw(p as i32)));

        if let (Some(text), Some(mut input)) = (self.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                // a program that does not read its input is not an error
                let _ = input.write_all(text.as_bytes()).await;
            });
        }
        let stdout = Capture::start(child.stdout.take());
        let stderr = Capture::start(child.stderr.take());

        let (status, timed_out) = match self.timeout {
            None => (child.wait().await, false),
            Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
                Ok(status) => (status, false),
                Err(_) => {
                    group.kill();
                    (child.wait().await, true)
                }
            },
        };
        group.disarm();
        let status = match status {
            Ok(status) => status,
            Err(e) => return Outcome::fail(format!("cmd.run: cannot wait for {program}: {e}")),
        };
        let mut retcode = exit_code(status);
        let stdout = stdout.finish().await;
        let mut stderr = stderr.finish().await;
        if timed_out {
            retcode = TIMEOUT_RETCODE;
            if !stderr.is_empty() {
                stderr.push('\n');
            }
            let group = pid.map(|p| format!(" {p}")).unwrap_or_default();
            stderr.push_str(&format!(
                "cmd.run: timed out after {}; killed process group{group}",
                human(self.timeout.unwrap_or_default())
            ));
        }
        Outcome {
            success: retcode == 0,
            retcode,
            ret: json!({"pid": pid, "retcode": retcode, "stdout": stdout, "stderr": stderr}),
        }
    }
}

/// The exit status as a shell reports it: the code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

fn spawn_failure(program: &str, e: &io::Error) -> Outcome {
    let (retcode, why) = match e.kind() {
        io::ErrorKind::NotFound if program.contains('/') => (127, "no such file".to_string()),
        io::ErrorKind::NotFound => (127, "no such program in PATH".to_string()),
        io::ErrorKind::PermissionDenied => (126, "permission denied".to_string()),
        _ => (126, e.to_string()),
    };
    Outcome { success: false, retcode, ret: Value::String(format!("cmd.run: cannot run '{program}': {why}")) }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0}s") } else { format!("{secs}s") }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0 {
            if let Err(e) = killpg(pgid, Signal::SIGKILL) {
                tracing::debug!(pgid = pgid.as_raw(), cause = %e, "cannot kill process group");
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Output of one stream: the first [`MAX_OUTPUT`] bytes kept, the rest counted.
#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

struct Capture {
    shared: Arc<Mutex<Captured>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Capture {
    fn start(stream: Option<impl AsyncRead + Unpin + Send + 'static>) -> Self {
        let shared = Arc::new(Mutex::new(Captured::default()));
        let task = stream.map(|mut stream| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut c = shared.lock().unwrap_or_else(|p| p.into_inner());
                            let room = MAX_OUTPUT.saturating_sub(c.kept.len()).min(n);
                            c.kept.extend_from_slice(&buf[..room]);
                            c.total += n as u64;
                        }
                    }
                }
            })
        });
        Self { shared, task }
    }

    /// Waits (a little) for the rest of the output, then gives it as text.
    async fn finish(mut self) -> String {
        let mut note = String::new();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN_GRACE, task).await.is_err() {
                abort.abort();
                note = "\n[drover: stopped reading: the output stayed open after the command exited]".into();
            }
        }
        let c = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::from_utf8_lossy(&c.kept).into_owned();
        let trimmed = text.trim_end_matches(['\n', '\r']).len();
        text.truncate(trimmed);
        if c.total > c.kept.len() as u64 {
            text.push_str(&format!(
                "\n[drover: output cut to its first {} of {} bytes]",
                c.kept.len(),
                c.total
            ));
        }
        text.push_str(&note);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Kwargs, call_of, run};
    use super::*;

    fn spec(args: Vec<Value>, kwargs: &[(&str, Value)]) -> Spec {
        Spec::from_call(&call_of("cmd.run", args, kwargs)).unwrap()
    }

    #[test]
    fn argv_from_words_lists_and_shell() {
        let argv = |args: Vec<Value>, kw: &[(&str, Value)]| spec(args, kw).argv;
        assert_eq!(argv(vec![json!("echo 'a b' c")], &[]), ["echo", "a b", "c"]);
        assert_eq!(argv(vec![json!("echo"), json!("a b"), json!(3)], &[]), ["echo", "a b", "3"]);
        assert_eq!(
            argv(vec![json!("echo $HOME | cat")], &[("shell", json!(true))]),
            ["/bin/sh", "-c", "echo $HOME | cat"]
        );
        assert_eq!(
            argv(vec![json!("echo"), json!("x")], &[("shell", json!("true"))]),
            ["/bin/sh", "-c", "echo x"]
        );
        let bad: &[(Vec<Value>, Kwargs, &str)] = &[
            (vec![json!("echo 'open")], &[], "unbalanced quotes"),
            (vec![json!("")], &[], "empty command"),
            (vec![json!(null)], &[], "strings or numbers"),
            (vec![json!("ls")], &[("cwd", json!("/no/such/dir"))], "not an existing directory"),
            (vec![json!("ls")], &[("env", json!(["A=1"]))], "a map of NAME: value"),
            (vec![json!("ls")], &[("env", json!({"A=B": "1"}))], "NAME: value pairs"),
            (vec![json!("ls")], &[("timeout", json!(0))], "above 0"),
            (vec![json!("ls")], &[("shell", json!("perhaps"))], "true or false"),
            (vec![json!("ls")], &[("stdin", json!(1))], "expects a string"),
        ];
        for (args, kw, want) in bad {
            let o = Spec::from_call(&call_of("cmd.run", args.clone(), kw)).unwrap_err();
            let msg = o.ret.as_str().unwrap();
            assert!(!o.success && msg.contains(want), "{args:?} {kw:?}: {msg}");
        }
    }

    #[tokio::test]
    async fn runs_without_a_shell() {
        let o = run("cmd.run", vec![json!("echo $HOME 'a  b'")], &[]).await;
        assert!(o.success, "{o:?}");
        assert_eq!(o.ret["stdout"], json!("$HOME a  b"));
        assert_eq!(o.ret["retcode"], json!(0));
        assert!(o.ret["pid"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn shell_exit_status_and_stderr() {
        let o =
            run("cmd.run", vec![json!("echo out; echo err >&2; exit 3")], &[("shell", json!(true))]).await;
        assert_eq!((o.success, o.retcode), (false, 3));
        assert_eq!(o.ret["stdout"], json!("out"));
        assert_eq!(o.ret["stderr"], json!("err"));
        assert_eq!(o.ret["retcode"], json!(3));
    }

    #[tokio::test]
    async fn cwd_env_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(
            "cmd.run",
            vec![json!("pwd; echo $GREETING; cat")],
            &[
                ("shell", json!(true)),
                ("cwd", json!(dir.path().to_str().unwrap())),
                ("env", json!({"GREETING": "hi", "N": 3})),
                ("stdin", json!("from stdin")),
            ],
        )
        .await;
        assert!(o.success, "{o:?}");
        let want = format!("{}\nhi\nfrom stdin", dir.path().canonicalize().unwrap().display());
        assert_eq!(o.ret["stdout"], json!(want));
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // a child of the shell, in the same group, would touch the marker if it outlived the kill
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let o = run("cmd.run", vec![json!(script)], &[("shell", json!(true)), ("timeout", json!(0.3))]).await;
        assert_eq!((o.success, o.retcode), (false, TIMEOUT_RETCODE));
        let stderr = o.ret["stderr"].as_str().unwrap();
        assert!(stderr.contains("timed out after 0.3s; killed process group"), "{stderr}");
        let pgid = o.ret["pid"].as_i64().unwrap();
        // the whole group is gone (zombies waiting for a reaper do not count)
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while live_members(pgid) > 0 {
            assert!(std::time::Instant::now() < deadline, "process group {pgid} still alive");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!marker.exists());
    }

    /// Processes of group `pgid` that are not zombies, from /proc/*/stat.
    fn live_members(pgid: i64) -> usize {
        let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
        dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'
                let Some((_, rest)) = stat.rsplit_once(')') else { return false };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<i64>().ok() == Some(pgid)
            })
            .count()
    }

    #[tokio::test]
    async fn runas_switches_user() {
        let o = run("cmd.run", vec![json!("id -un")], &[("runas", json!("no-such-user-drover"))]).await;
        assert_eq!(
            o.ret,
            json!(format!(
                "cmd.run: runas=no-such-user-drover: no user named 'no-such-user-drover' on this minion; usage: {USAGE}"
            ))
        );
        let o = run(
            "cmd.run",
            vec![json!("echo $(id -un) $HOME $X")],
            &[("runas", json!("nobody")), ("shell", json!(true)), ("env", json!({"X": "x"}))],
        )
        .await;
        if nix::unistd::geteuid().is_root() {
            let home = Account::lookup("nobody").unwrap().home;
            assert_eq!(o.ret["stdout"], json!(format!("nobody {} x", home.display())), "{o:?}");
        } else {
            assert!(o.ret.as_str().unwrap().contains("switching users needs root"), "{o:?}");
        }
    }

    #[tokio::test]
    async fn missing_programs_are_named() {
        let o = run("cmd.run", vec![json!("no-such-program-drover --x")], &[]).await;
        assert_eq!((o.success, o.retcode), (false, 127));
        assert_eq!(o.ret, json!("cmd.run: cannot run 'no-such-program-drover': no such program in PATH"));
        let o = run("cmd.run", vec![json!("/nonexistent/prog")], &[]).await;
        assert_eq!(o.ret, json!("cmd.run: cannot run '/nonexistent/prog': no such file"));
        let dir = tempfile::tempdir().unwrap();
        let o = run("cmd.run", vec![json!(dir.path().to_str().unwrap())], &[]).await;
        assert_eq!((o.success, o.retcode), (false, 126), "{o:?}");
    }

    #[tokio::test]
    async fn long_output_is_cut_and_says_so() {
        let size = MAX_OUTPUT + 1000;
        let o = run(
            "cmd.run",
            vec![json!(format!("head -c {size} /dev/zero | tr '\\0' x"))],
            &[("shell", json!(true))],
        )
        .await;
        assert!(o.success, "{o:?}");
        let out = o.ret["stdout"].as_str().unwrap();
        let (kept, note) = out.split_at(MAX_OUTPUT);
        assert!(kept.bytes().all(|b| b == b'x'));
        assert_eq!(note, format!("\n[drover: output cut to its first {MAX_OUTPUT} of {size} bytes]"));
    }

    #[tokio::test]
    async fn killed_by_a_signal() {
        let o = run("cmd.run", vec![json!("kill -9 $$")], &[("shell", json!(true))]).await;
        assert_eq!((o.success, o.retcode), (false, 128 + 9));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}

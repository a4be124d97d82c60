//! `cmd.run`, `cmd.run_all` and `cmd.retcode`: run a command line, as Salt's do, and return
//! its output, all of it, or its exit code. [`Command`] is what they run, and what the
//! `cmd.run` state runs too.
//!
//! A command line given as one string runs with `/bin/sh -c`, as Salt runs it from the CLI
//! and in states (`python_shell`). Without a shell (no pipes, redirections or expansions)
//! run `shell=false` (the string is split into words like a shell would, without
//! expanding anything), a list, or several arguments (the words of the argv); `shell=true`
//! joins several arguments into one command line. As in Salt, `cmd=` may hold the command
//! line instead (for one whose first word has an `=`, which the CLI takes for a keyword).
//!
//! `cmd.run` returns the output, stderr merged into stdout in the order it was written
//! (Salt's `redirect_stderr`); `cmd.run_all` `{pid, retcode, stdout, stderr}`; `cmd.retcode`
//! the exit status. Each trims trailing newlines, and the job's retcode is the command's:
//! it succeeds when that is 0.
//!
//! The program gets its own process group, so a timeout kills everything it started.
//! `runas=USER` runs it as that user (with the user's groups, `HOME`, `USER`, `LOGNAME`,
//! `SHELL`); only a minion running as root can do that. Children are started through
//! [`reaper::spawn`], so the reaper never takes their exit status.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wire::msg::MAX_OUTPUT;

use super::{BoxFuture, Call, Outcome, arity, boolean, known_kwargs, scalar_string, seconds};
use crate::reaper;
use crate::runas::Account;

const KWARGS: &[&str] = &["cmd", "shell", "cwd", "env", "timeout", "stdin", "runas"];

fn usage(fun: &str) -> String {
    format!(
        "{fun} <command line> | {fun} <program> <arg>... | {fun} cmd=<command line> \
         [shell=true|false] [cwd=DIR] [env={{K: V}}] [timeout=SECS] [stdin=TEXT] [runas=USER]"
    )
}

/// The retcode of a command killed on timeout, as timeout(1) reports it.
pub const TIMEOUT_RETCODE: i32 = 124;
/// How long output is still read after the command exited (a background process it left
/// behind may hold its output open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// `cmd.run`: the output, stderr merged into stdout.
pub fn run(call: Call) -> BoxFuture {
    reply(call, Reply::Output)
}

/// `cmd.run_all`: `{pid, retcode, stdout, stderr}`.
pub fn run_all(call: Call) -> BoxFuture {
    reply(call, Reply::All)
}

/// `cmd.retcode`: the exit status.
pub fn retcode(call: Call) -> BoxFuture {
    reply(call, Reply::Retcode)
}

/// What a `cmd.*` function returns.
#[derive(Clone, Copy)]
enum Reply {
    Output,
    All,
    Retcode,
}

fn reply(call: Call, reply: Reply) -> BoxFuture {
    Box::pin(async move {
        let command = match Command::from_call(&call) {
            Ok(command) => command,
            Err(o) => return o,
        };
        let streams = match reply {
            Reply::Output => Streams::Merged,
            Reply::All | Reply::Retcode => Streams::Separate,
        };
        match command.run(streams).await {
            Err(e) => Outcome {
                success: false,
                retcode: e.retcode,
                ret: json!(format!("{}: {}", call.fun, e.message)),
            },
            Ok(ran) => {
                let retcode = ran.retcode;
                let ret = match reply {
                    Reply::Output => Value::String(ran.stdout),
                    Reply::All => Value::Object(ran.into_map()),
                    Reply::Retcode => json!(retcode),
                };
                Outcome { success: retcode == 0, retcode, ret }
            }
        }
    })
}

/// How a command's output is read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Streams {
    /// stdout and stderr through one pipe, in the order written, as [`Ran::stdout`].
    Merged,
    /// Each on its own.
    Separate,
}

/// A command that ran (to its end, or killed on its timeout).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ran {
    pub pid: Option<u32>,
    /// The exit status, 128 + a signal that killed it, or [`TIMEOUT_RETCODE`].
    pub retcode: i32,
    pub stdout: String,
    /// Empty with [`Streams::Merged`].
    pub stderr: String,
}

impl Ran {
    /// `{pid, retcode, stdout, stderr}`: `cmd.run_all`'s return, and the `cmd.run` state's changes.
    pub fn into_map(self) -> Map<String, Value> {
        Map::from_iter([
            ("pid".to_string(), json!(self.pid)),
            ("retcode".to_string(), json!(self.retcode)),
            ("stdout".to_string(), Value::String(self.stdout)),
            ("stderr".to_string(), Value::String(self.stderr)),
        ])
    }
}

/// Why a command did not run: a message, and the retcode a shell would give (126, 127).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NotRun {
    pub retcode: i32,
    pub message: String,
}

/// What to run, checked before anything starts.
#[derive(Debug, PartialEq)]
pub(crate) struct Command {
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub stdin: Option<String>,
    pub runas: Option<Account>,
}

/// `dir`, if it is an existing directory (a missing one would fail the spawn as if the
/// program were missing).
pub(crate) fn existing_dir(dir: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(dir);
    if path.is_dir() { Ok(path) } else { Err(format!("cwd {dir} is not an existing directory")) }
}

/// The account of `user`, if this minion can run a command as it.
pub(crate) fn account(user: &str) -> Result<Account, String> {
    Account::lookup(user).and_then(|a| a.check().map(|()| a)).map_err(|e| e.to_string())
}

impl Command {
    fn from_call(call: &Call) -> Result<Self, Outcome> {
        let usage = usage(&call.fun);
        known_kwargs(call, KWARGS, &usage)?;
        let fail = |what: String| Outcome::fail(format!("{}: {what}; usage: {usage}", call.fun));
        let kw = &call.kwargs;
        // `cmd=` holds a command line with an `=` that the CLI would take for a keyword
        let line = kw.get("cmd").map(std::slice::from_ref);
        let args = match line {
            Some(_) if !call.args.is_empty() => {
                return Err(fail("give the command as arguments or as cmd=, not both".into()));
            }
            Some(line) => line,
            None => {
                arity(call, 1..=usize::MAX, &usage)?;
                call.args.as_slice()
            }
        };

        let shell = match kw.get("shell") {
            None => None,
            Some(v) => {
                Some(boolean(v).ok_or_else(|| fail(format!("shell= expects true or false, got {v}")))?)
            }
        };
        let words = |values: &[Value]| -> Result<Vec<String>, Outcome> {
            values
                .iter()
                .map(|v| {
                    scalar_string(v)
                        .ok_or_else(|| fail(format!("arguments must be strings or numbers, got {v}")))
                })
                .collect()
        };
        let argv = match (args, shell) {
            ([Value::Array(_)], Some(true)) => {
                return Err(fail(
                    "with shell=true, expected the command line as one string, got a list".into(),
                ));
            }
            ([Value::Array(list)], _) => words(list)?,
            ([one], None | Some(true)) => {
                let line = words(std::slice::from_ref(one))?.remove(0);
                if line.trim().is_empty() {
                    return Err(fail("expected a command line, got an empty one".into()));
                }
                vec!["/bin/sh".to_string(), "-c".to_string(), line]
            }
            ([one], Some(false)) => {
                let line = words(std::slice::from_ref(one))?.remove(0);
                shlex::split(&line)
                    .ok_or_else(|| fail(format!("cannot split {line:?} into words: unbalanced quotes")))?
            }
            (several, Some(true)) => vec!["/bin/sh".to_string(), "-c".to_string(), words(several)?.join(" ")],
            (several, _) => words(several)?,
        };
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(fail("expected a program to run, got an empty command".into()));
        }
        if let Some(bad) = argv.iter().find(|a| a.contains('\0')) {
            return Err(fail(format!("argument {bad:?} contains a NUL byte")));
        }

        let cwd = match kw.get("cwd") {
            None => None,
            Some(Value::String(dir)) => Some(existing_dir(dir).map_err(fail)?),
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
                Some(account(user).map_err(|e| fail(format!("runas={user}: {e}")))?)
            }
            Some(v) => return Err(fail(format!("runas= expects a user name, got {v}"))),
        };
        Ok(Self { argv, cwd, env, timeout, stdin, runas })
    }

    /// Runs the command to its end (or its timeout), reading its output as `streams` says.
    pub async fn run(self, streams: Streams) -> Result<Ran, NotRun> {
        let program = &self.argv[0];
        let not_run = |retcode: i32, message: String| NotRun { retcode, message };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&self.argv[1..])
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .process_group(0)
            .kill_on_drop(true);
        let merged = match streams {
            Streams::Separate => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                None
            }
            Streams::Merged => {
                let (reader, writer) =
                    one_pipe().map_err(|e| not_run(1, format!("cannot make a pipe: {e}")))?;
                let writer2 =
                    writer.try_clone().map_err(|e| not_run(1, format!("cannot make a pipe: {e}")))?;
                cmd.stdout(Stdio::from(writer)).stderr(Stdio::from(writer2));
                Some(reader)
            }
        };
        if let Some(account) = &self.runas {
            // the user's HOME etc. first, so that env= can still override them
            account.apply(cmd.as_std_mut()).map_err(|e| not_run(1, e.to_string()))?;
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let spawned = reaper::spawn(&mut cmd);
        // the command holds our copies of the pipe's write end: the output ends with it
        drop(cmd);
        let mut child = spawned.map_err(|e| spawn_failure(program, &e))?;
        let pid = child.id();
        // if this job is dropped (the minion stops), take the whole group down with it
        let mut group = GroupGuard(pid.map(|p| Pid::from_raw(p as i32)));

        if let (Some(text), Some(mut input)) = (self.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                // a program that does not read its input is not an error
                let _ = input.write_all(text.as_bytes()).await;
            });
        }
        let (stdout, stderr) = match merged {
            Some(reader) => {
                let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader)
                    .map_err(|e| not_run(1, format!("cannot read the output of {program}: {e}")))?;
                (Capture::start(Some(reader)), Capture::start(None::<tokio::process::ChildStderr>))
            }
            None => (Capture::start(child.stdout.take()), Capture::start(child.stderr.take())),
        };

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
        let status = status.map_err(|e| not_run(1, format!("cannot wait for {program}: {e}")))?;
        let mut retcode = exit_code(status);
        let mut stdout = stdout.finish().await;
        let mut stderr = stderr.finish().await;
        if timed_out {
            retcode = TIMEOUT_RETCODE;
            let note = if streams == Streams::Merged { &mut stdout } else { &mut stderr };
            if !note.is_empty() {
                note.push('\n');
            }
            let group = pid.map(|p| format!(" {p}")).unwrap_or_default();
            note.push_str(&format!(
                "cmd.run: timed out after {}; killed process group{group}",
                human(self.timeout.unwrap_or_default())
            ));
        }
        Ok(Ran { pid, retcode, stdout, stderr })
    }
}

/// A pipe whose ends are closed on exec (the child gets its own copies as stdout and stderr).
fn one_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// The exit status as a shell reports it: the code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

fn spawn_failure(program: &str, e: &io::Error) -> NotRun {
    let (retcode, why) = match e.kind() {
        io::ErrorKind::NotFound if program.contains('/') => (127, "no such file".to_string()),
        io::ErrorKind::NotFound => (127, "no such program in PATH".to_string()),
        io::ErrorKind::PermissionDenied => (126, "permission denied".to_string()),
        _ => (126, e.to_string()),
    };
    NotRun { retcode, message: format!("cannot run '{program}': {why}") }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0}s") } else { format!("{secs}s") }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0
            && let Err(e) = killpg(pgid, Signal::SIGKILL)
        {
            tracing::debug!(pgid = pgid.as_raw(), cause = %e, "cannot kill process group");
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

    fn command(args: Vec<Value>, kwargs: &[(&str, Value)]) -> Command {
        Command::from_call(&call_of("cmd.run", args, kwargs)).unwrap()
    }

    #[test]
    fn a_command_line_runs_in_a_shell_a_list_or_shell_false_does_not() {
        let argv = |args: Vec<Value>, kw: &[(&str, Value)]| command(args, kw).argv;
        let sh = |line: &str| ["/bin/sh", "-c", line].map(String::from).to_vec();
        assert_eq!(argv(vec![json!("ps aux | grep x | wc -l")], &[]), sh("ps aux | grep x | wc -l"));
        assert_eq!(argv(vec![json!("echo $HOME")], &[("shell", json!(true))]), sh("echo $HOME"));
        assert_eq!(argv(vec![json!("echo 'a b' c")], &[("shell", json!(false))]), ["echo", "a b", "c"]);
        assert_eq!(argv(vec![json!("echo 'a b' c")], &[("shell", json!("no"))]), ["echo", "a b", "c"]);
        assert_eq!(argv(vec![json!(["echo", "$HOME", 3])], &[]), ["echo", "$HOME", "3"]);
        assert_eq!(argv(vec![json!("echo"), json!("a b"), json!(3)], &[]), ["echo", "a b", "3"]);
        assert_eq!(argv(vec![json!("echo"), json!("x")], &[("shell", json!("true"))]), sh("echo x"));
        assert_eq!(argv(vec![], &[("cmd", json!("x=1; echo $x"))]), sh("x=1; echo $x"));
        assert_eq!(
            argv(vec![], &[("cmd", json!("sed -e s/=/:/g")), ("shell", json!(false))]),
            ["sed", "-e", "s/=/:/g"]
        );
        let bad: &[(Vec<Value>, Kwargs, &str)] = &[
            (vec![json!("echo 'open")], &[("shell", json!(false))], "unbalanced quotes"),
            (vec![json!(" ")], &[], "expected a command line, got an empty one"),
            (vec![json!("")], &[("shell", json!(false))], "empty command"),
            (vec![json!([])], &[], "empty command"),
            (vec![json!(["ls", "-l"])], &[("shell", json!(true))], "expected the command line as one string"),
            (vec![json!(null)], &[], "strings or numbers"),
            (vec![json!(["ls", {"a": 1}])], &[], "strings or numbers"),
            (
                vec![json!("ls")],
                &[("cwd", json!("/no/such/dir"))],
                "cwd /no/such/dir is not an existing directory",
            ),
            (vec![json!("ls")], &[("env", json!(["A=1"]))], "a map of NAME: value"),
            (vec![json!("ls")], &[("env", json!({"A=B": "1"}))], "NAME: value pairs"),
            (vec![json!("ls")], &[("timeout", json!(0))], "above 0"),
            (vec![json!("ls")], &[("shell", json!("perhaps"))], "true or false"),
            (vec![json!("ls")], &[("stdin", json!(1))], "expects a string"),
            (vec![json!("ls")], &[("cmd", json!("ls"))], "as arguments or as cmd=, not both"),
            (vec![], &[], "cmd.run takes 1 or more arguments, got 0"),
        ];
        for (args, kw, want) in bad {
            let o = Command::from_call(&call_of("cmd.run", args.clone(), kw)).unwrap_err();
            let msg = o.ret.as_str().unwrap();
            assert!(!o.success && msg.contains(want), "{args:?} {kw:?}: {msg}");
        }
    }

    #[tokio::test]
    async fn cmd_run_runs_a_pipeline_and_redirections_in_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let o = run("cmd.run", vec![json!("printf 'x\\ny\\nx\\n' | grep x | wc -l")], &[]).await;
        assert_eq!((o.success, o.retcode, o.ret.as_str().map(str::trim)), (true, 0, Some("2")), "{o:?}");
        let file = dir.path().join("f");
        let o = run("cmd.run", vec![json!(format!("echo yes > {}", file.display()))], &[]).await;
        assert_eq!(o, Outcome { success: true, retcode: 0, ret: json!("") });
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "yes\n");
    }

    #[tokio::test]
    async fn cmd_run_returns_stdout_and_stderr_merged_in_order_and_the_exit_status() {
        let o = run("cmd.run", vec![json!("echo out; echo err >&2; echo more; exit 3")], &[]).await;
        assert_eq!(o, Outcome { success: false, retcode: 3, ret: json!("out\nerr\nmore") });
    }

    #[tokio::test]
    async fn run_all_keeps_the_streams_apart_and_retcode_returns_the_status() {
        let line = json!("echo out; echo err >&2; exit 3");
        let o = run("cmd.run_all", vec![line.clone()], &[]).await;
        assert_eq!((o.success, o.retcode), (false, 3));
        assert_eq!(
            (&o.ret["stdout"], &o.ret["stderr"], &o.ret["retcode"]),
            (&json!("out"), &json!("err"), &json!(3))
        );
        assert!(o.ret["pid"].as_u64().unwrap() > 0);
        let o = run("cmd.retcode", vec![line], &[]).await;
        assert_eq!(o, Outcome { success: false, retcode: 3, ret: json!(3) });
        let o = run("cmd.retcode", vec![json!("true")], &[]).await;
        assert_eq!(o, Outcome { success: true, retcode: 0, ret: json!(0) });
    }

    #[tokio::test]
    async fn without_a_shell_nothing_is_expanded() {
        for (args, kw) in [
            (vec![json!("echo $HOME 'a  b'")], &[("shell", json!(false))][..]),
            (vec![json!(["echo", "$HOME", "a  b"])], &[]),
            (vec![json!("echo"), json!("$HOME"), json!("a  b")], &[]),
        ] {
            let o = run("cmd.run", args.clone(), kw).await;
            assert_eq!(o, Outcome { success: true, retcode: 0, ret: json!("$HOME a  b") }, "{args:?}");
        }
    }

    #[tokio::test]
    async fn cwd_env_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(
            "cmd.run",
            vec![json!("pwd; echo $GREETING; cat")],
            &[
                ("cwd", json!(dir.path().to_str().unwrap())),
                ("env", json!({"GREETING": "hi", "N": 3})),
                ("stdin", json!("from stdin")),
            ],
        )
        .await;
        assert!(o.success, "{o:?}");
        let want = format!("{}\nhi\nfrom stdin", dir.path().canonicalize().unwrap().display());
        assert_eq!(o.ret, json!(want));
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // a child of the shell, in the same group, would touch the marker if it outlived the kill
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let o = run("cmd.run_all", vec![json!(script)], &[("timeout", json!(0.3))]).await;
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
        // cmd.run says so in its output
        let o = run("cmd.run", vec![json!("echo started; sleep 30")], &[("timeout", json!(0.2))]).await;
        let out = o.ret.as_str().unwrap();
        assert!(out.starts_with("started\ncmd.run: timed out after 0.2s; killed process group "), "{out}");
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
                "cmd.run: runas=no-such-user-drover: no user named 'no-such-user-drover' on this minion; usage: {}",
                usage("cmd.run")
            ))
        );
        let o = run(
            "cmd.run",
            vec![json!("echo $(id -un) $HOME $X")],
            &[("runas", json!("nobody")), ("env", json!({"X": "x"}))],
        )
        .await;
        if nix::unistd::geteuid().is_root() {
            let home = Account::lookup("nobody").unwrap().home;
            assert_eq!(o.ret, json!(format!("nobody {} x", home.display())), "{o:?}");
        } else {
            assert!(o.ret.as_str().unwrap().contains("switching users needs root"), "{o:?}");
        }
    }

    #[tokio::test]
    async fn missing_programs_are_named() {
        // without a shell, by drover
        let no_shell = [("shell", json!(false))];
        let o = run("cmd.run", vec![json!("no-such-program-drover --x")], &no_shell).await;
        assert_eq!((o.success, o.retcode), (false, 127));
        assert_eq!(o.ret, json!("cmd.run: cannot run 'no-such-program-drover': no such program in PATH"));
        let o = run("cmd.run_all", vec![json!(["/nonexistent/prog"])], &[]).await;
        assert_eq!(o.ret, json!("cmd.run_all: cannot run '/nonexistent/prog': no such file"));
        let dir = tempfile::tempdir().unwrap();
        let o = run("cmd.retcode", vec![json!(dir.path().to_str().unwrap())], &no_shell).await;
        assert_eq!((o.success, o.retcode), (false, 126), "{o:?}");
        // in a shell, by the shell
        let o = run("cmd.run", vec![json!("no-such-program-drover --x")], &[]).await;
        assert_eq!((o.success, o.retcode), (false, 127));
        assert!(o.ret.as_str().unwrap().contains("no-such-program-drover: not found"), "{o:?}");
    }

    #[tokio::test]
    async fn long_output_is_cut_and_says_so() {
        let size = MAX_OUTPUT + 1000;
        let o = run("cmd.run", vec![json!(format!("head -c {size} /dev/zero | tr '\\0' x"))], &[]).await;
        assert!(o.success, "{o:?}");
        let out = o.ret.as_str().unwrap();
        let (kept, note) = out.split_at(MAX_OUTPUT);
        assert!(kept.bytes().all(|b| b == b'x'));
        assert_eq!(note, format!("\n[drover: output cut to its first {MAX_OUTPUT} of {size} bytes]"));
    }

    #[tokio::test]
    async fn killed_by_a_signal() {
        let o = run("cmd.run", vec![json!("kill -9 $$")], &[]).await;
        assert_eq!((o.success, o.retcode), (false, 128 + 9));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}

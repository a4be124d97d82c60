//! The system calls the supervisor makes, behind [`Sys`]: start a daemon (its own process
//! group, user, env, cwd, output into its log) and get a future of its exit status, signal a
//! process group, find the processes that left a daemon's group, build a health prober. [`RealSys`] makes them; the tests' fake records
//! them, so the restart, backoff and stop logic runs in milliseconds of paused time.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use render::DaemonRunning;
use tokio::io::AsyncReadExt;

use super::health::{self, BoxFuture, ExecContext, Prober};
use super::log::LogSink;
use crate::reaper;
use crate::runas::Account;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Its status could not be read.
    Unknown,
}

impl Exit {
    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            _ => Exit::Unknown,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal(signal) => match Signal::try_from(*signal) {
                Ok(signal) => write!(f, "killed by {signal}"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            Exit::Unknown => write!(f, "ended (exit status unknown)"),
        }
    }
}

/// A started process: its pid (also its process group) and its exit, to await.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) exit: BoxFuture<Exit>,
}

pub(crate) trait Sys: Send + 'static {
    /// Starts `spec.cmd` in a new process group, its output going to `log`. The error says
    /// why it could not start, for people.
    fn spawn(&mut self, spec: &DaemonRunning, log: &LogSink) -> Result<Spawned, String>;

    /// Sends `signal` to the process group `pgid`.
    fn kill_group(&mut self, pgid: u32, signal: Signal) -> Result<(), Errno>;

    /// Live processes outside process group `pgid` whose environment carries
    /// `DROVER_DAEMON=<tag>` (every such process when `pgid` is 0): what a daemon that forks
    /// into the background (`setsid`) leaves where signals to its group do not reach.
    fn escaped(&mut self, tag: &str, pgid: u32) -> Vec<u32>;

    /// Sends `signal` to process `pid`.
    fn kill_pid(&mut self, pid: u32, signal: Signal) -> Result<(), Errno>;

    /// The health check of `spec`, if it has one.
    fn prober(&mut self, spec: &DaemonRunning) -> Option<Prober>;
}

/// The real system.
pub(crate) struct RealSys;

impl Sys for RealSys {
    fn spawn(&mut self, spec: &DaemonRunning, log: &LogSink) -> Result<Spawned, String> {
        let Some((program, args)) = spec.cmd.split_first() else {
            return Err("its cmd is empty".into());
        };
        let account = match &spec.user {
            Some(user) => Some(Account::lookup(user).map_err(|e| e.to_string())?),
            None => None,
        };
        if let Some(dir) = &spec.cwd
            && !Path::new(dir).is_dir()
        {
            return Err(format!("its cwd {dir} is not an existing directory"));
        }
        // one pipe for stdout and stderr, so the log keeps their order
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot make a pipe: {e}"))?;
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
            .map_err(|e| format!("cannot read a pipe: {e}"))?;
        let write_err = write.try_clone().map_err(|e| format!("cannot make a pipe: {e}"))?;

        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write_err))
            .process_group(0)
            .kill_on_drop(true);
        if let Some(account) = &account {
            account.apply(cmd.as_std_mut()).map_err(|e| e.to_string())?;
        }
        cmd.envs(&spec.env);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let spawned = reaper::spawn(&mut cmd);
        // drop our copies of the pipe's write end, so the reader sees the end of output
        drop(cmd);
        let mut child = spawned.map_err(|e| spawn_error(program, &e))?;
        let pid = child.id().unwrap_or_default();
        tokio::spawn(copy_output(reader, log.clone()));
        let exit = Box::pin(async move { child.wait().await.map_or(Exit::Unknown, Exit::from) });
        Ok(Spawned { pid, exit })
    }

    fn kill_group(&mut self, pgid: u32, signal: Signal) -> Result<(), Errno> {
        match i32::try_from(pgid) {
            // never group 0 (our own) or 1
            Ok(pgid) if pgid > 1 => killpg(Pid::from_raw(pgid), signal),
            _ => Err(Errno::EINVAL),
        }
    }

    fn escaped(&mut self, tag: &str, pgid: u32) -> Vec<u32> {
        let proc = Path::new("/proc");
        // every daemon starts after the minion: older processes are not read
        let since = stat_fields(&proc.join("self")).and_then(|f| start_time(&f)).unwrap_or(0);
        tagged_processes(proc, &format!("{TAG_VAR}={tag}"), pgid, since)
    }

    fn kill_pid(&mut self, pid: u32, signal: Signal) -> Result<(), Errno> {
        match i32::try_from(pid) {
            Ok(pid) if pid > 1 && pid as u32 != std::process::id() => {
                nix::sys::signal::kill(Pid::from_raw(pid), signal)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn prober(&mut self, spec: &DaemonRunning) -> Option<Prober> {
        let health = spec.health.as_ref()?;
        let account = match spec.user.as_deref().map(Account::lookup).transpose() {
            Ok(account) => account,
            // never run the check as root instead: fail it, saying why
            Err(e) => {
                let why = format!("health check: {e}");
                return Some(Box::new(move || Box::pin(std::future::ready(Err(why.clone())))));
            }
        };
        let exec = ExecContext {
            account,
            env: spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            cwd: spec.cwd.clone(),
        };
        Some(health::prober(health.check.clone(), exec))
    }
}

/// The environment variable every daemon is started with: `<daemon name>@<daemons
/// directory>#<random>`, which names the daemon and the minion that started it (`cat
/// /proc/PID/environ` tells a person whose a process is); the random part is new for every
/// minion start. Its children inherit it, also those that leave the group.
pub(crate) const TAG_VAR: &str = "DROVER_DAEMON";

/// The fields of `/proc/PID/stat` after the command (which is in parentheses and may hold
/// anything): state, ppid, pgrp, ...
fn stat_fields(process: &Path) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(process.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// A process's start time, in clock ticks since boot (field 22 of stat).
fn start_time(fields: &[String]) -> Option<u64> {
    fields.get(19)?.parse().ok()
}

/// Processes under `proc` (a procfs) whose environment holds exactly the entry `entry`,
/// among those that started at `since` (clock ticks since boot) or later, are neither
/// zombies nor in uninterruptible sleep, and are not in group `pgid` (unless it is 0).
/// Processes whose environment cannot be read (another user's, when not root) are skipped.
///
/// This reads procfs on the supervisor's task: no disk is involved, older processes are
/// told apart by their stat alone, and a process in `D` state, whose memory could be
/// locked for long, is never read. It runs when a daemon stops, ends or is signalled.
fn tagged_processes(proc: &Path, entry: &str, pgid: u32, since: u64) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc) else { return Vec::new() };
    let me = std::process::id();
    let mut found: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid > 1)
        .filter(|pid| {
            let process = proc.join(pid.to_string());
            let Some(fields) = stat_fields(&process) else { return false };
            let (Some(state), Some(group)) = (fields.first(), fields.get(2)) else { return false };
            if state == "Z" || state == "D" || (pgid != 0 && group.parse::<u32>().ok() == Some(pgid)) {
                return false;
            }
            if start_time(&fields).is_none_or(|t| t < since) {
                return false;
            }
            std::fs::read(process.join("environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == entry.as_bytes()))
        })
        .collect();
    found.sort_unstable();
    found
}

fn spawn_error(program: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound if program.contains('/') => format!("cannot run '{program}': no such file"),
        io::ErrorKind::NotFound => format!("cannot run '{program}': no such program in PATH"),
        io::ErrorKind::PermissionDenied => format!("cannot run '{program}': permission denied"),
        _ => format!("cannot run '{program}': {e}"),
    }
}

/// Copies a process's output into its log until every writer closed the pipe.
async fn copy_output(mut reader: tokio::net::unix::pipe::Receiver, log: LogSink) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => log.write(buf[..n].to_vec()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc entry; it started at clock tick 500.
    fn process(proc: &Path, pid: u32, state: &str, pgid: u32, env: &[&str]) {
        process_since(proc, pid, state, pgid, env, 500)
    }

    fn process_since(proc: &Path, pid: u32, state: &str, pgid: u32, env: &[&str], start: u64) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{pid} (odd ) name) {state} 1 {pgid} {pgid} 0 -1 4194560 0 0 0 0 1 2 0 0 20 0 1 0 {start} 1000 99"
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("environ"), env.join("\0") + "\0").unwrap();
    }

    #[test]
    fn tagged_processes_are_found_outside_the_group_only() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        let tag = "DROVER_DAEMON=web@/d";
        process(p, 200, "S", 200, &["PATH=/bin", tag]); // the group itself
        process(p, 300, "S", 300, &[tag, "X=1"]); // left the group (setsid)
        process(p, 301, "Z", 301, &[tag]); // a zombie
        process(p, 302, "R", 302, &["DROVER_DAEMON=web@/d2"]); // another minion's
        process(p, 303, "S", 303, &["DROVER_DAEMON=web@/d/x"]); // not an exact match
        process(p, 304, "S", 304, &["NOT_DROVER_DAEMON=web@/d"]);
        process(p, 305, "D", 305, &[tag]); // uninterruptible: never read
        process_since(p, 306, "S", 306, &[tag], 100); // started before the minion
        std::fs::create_dir_all(p.join("self")).unwrap();
        assert_eq!(tagged_processes(p, tag, 200, 400), [300]);
        assert_eq!(tagged_processes(p, tag, 0, 400), [200, 300]);
        assert_eq!(tagged_processes(p, tag, 0, 0), [200, 300, 306]);
        assert_eq!(tagged_processes(&p.join("missing"), tag, 0, 0), Vec::<u32>::new());
    }
}

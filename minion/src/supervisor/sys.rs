//! The system calls the supervisor makes, behind [`Sys`]: start a daemon (its own process
//! group, user, env, cwd, output into its log) and get a future of its exit status, signal a
//! process group, build a health prober. [`RealSys`] makes them; the tests' fake records
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
        if let Some(dir) = &spec.cwd {
            if !Path::new(dir).is_dir() {
                return Err(format!("its cwd {dir} is not an existing directory"));
            }
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
            Ok(n) => log.write(buf[..n].to_vec()),
        }
    }
}

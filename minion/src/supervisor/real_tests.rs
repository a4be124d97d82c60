//! The supervisor with real processes (`sh`, `sleep`): start, logs and rotation, stop with
//! SIGKILL after the timeout, crash and restart, health checks, spec changes, retain,
//! shutdown order, user switch, and orphans left by a daemon.

use std::collections::BTreeSet;
use std::time::Duration;

use render::{DaemonRunning, Health, HealthCheck};
use serde_json::json;
use tokio::sync::mpsc;
use wire::msg::Event;

use super::sys::RealSys;
use super::*;
use crate::reaper::tests::{eventually, in_own_process, proc_state};

const PATIENCE: Duration = Duration::from_secs(20);

fn sh(name: &str, script: &str) -> DaemonRunning {
    super::test_spec(name, vec!["/bin/sh".into(), "-c".into(), script.into()])
}

struct Setup {
    sup: Supervisor,
    events: mpsc::UnboundedReceiver<Event>,
    dir: tempfile::TempDir,
}

fn setup_with(options: Options) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    let sup = Supervisor::start_with(dir.path().join("daemons"), tx, options, RealSys);
    Setup { sup, events, dir }
}

fn setup() -> Setup {
    setup_with(Options::default())
}

impl Setup {
    async fn next(&mut self, suffix: &str) -> Event {
        let wait = async {
            loop {
                let event = self.events.recv().await.expect("events channel closed");
                if event.tag.ends_with(suffix) {
                    return event;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait).await.unwrap_or_else(|_| panic!("no {suffix} event"))
    }

    /// Waits until the daemon's log holds `text`; returns the log.
    async fn log_with(&self, name: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let log = self.sup.logs(name, 1000).await.unwrap();
            if log.contains(text) {
                return log;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name}'s log never showed {text:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("daemons")
    }
}

/// Live (not zombie) processes of process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok()).any(|stat| {
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<u32>().ok() == Some(pgid)
    })
}

async fn until_group_gone(pgid: u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while group_alive(pgid) {
        assert!(tokio::time::Instant::now() < deadline, "process group {pgid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn starts_logs_output_and_stops() {
    let s = setup();
    let spec = sh("hello", "echo out; echo err >&2; exec sleep 30");
    let o = s.sup.ensure_running(&spec, false, false).await;
    assert!(o.result && o.changed, "{o:?}");
    let pid = o.changes["pid"].as_u64().unwrap() as u32;
    assert_eq!(proc_state(pid as i32).map(|(state, _)| state != 'Z'), Some(true));
    let log = s.log_with("hello", "err").await;
    assert!(log.starts_with(&format!("[drover] started pid {pid}: /bin/sh -c ")), "{log}");
    assert!(log.contains("out\n") && log.contains("err\n"), "{log}");
    assert!(s.log_dir().join("hello.log").is_file());

    let o = s.sup.ensure_stopped("hello", false).await;
    assert_eq!((o.result, o.comment.as_str()), (true, format!("stopped hello (pid {pid})").as_str()));
    until_group_gone(pid).await;
    let log = s.log_with("hello", "killed by SIGTERM").await;
    assert!(log.contains(&format!("[drover] stopping pid {pid} with SIGTERM")), "{log}");
    let info = s.sup.status("hello").await.unwrap();
    assert_eq!((info.state, info.pid), (DaemonState::Stopped, None));
    assert!(matches!(s.sup.logs("nobody", 5).await, Err(SupervisorError::Unknown(_))));
}

#[tokio::test]
async fn a_daemon_ignoring_sigterm_is_killed_with_its_group() {
    let s = setup();
    let mut spec =
        sh("stubborn", "trap '' TERM; (trap '' TERM; sleep 30) & echo ready; while :; do sleep 0.05; done");
    spec.stop_timeout_ms = 300;
    let o = s.sup.ensure_running(&spec, false, false).await;
    let pid = o.changes["pid"].as_u64().unwrap() as u32;
    s.log_with("stubborn", "ready").await;
    let o = s.sup.ensure_stopped("stubborn", false).await;
    assert!(o.result, "{o:?}");
    assert_eq!(o.comment, format!("killed stubborn (pid {pid}) with SIGKILL: it outlived SIGTERM by 300ms"));
    until_group_gone(pid).await;
}

#[tokio::test]
async fn a_daemon_that_dies_at_start_is_reported_in_its_own_words() {
    let s = setup();
    let o = s
        .sup
        .ensure_running(&sh("broken", "echo 'no config at /etc/broken.toml' >&2; exit 3"), false, false)
        .await;
    assert!(!o.result, "{o:?}");
    assert!(o.comment.starts_with("broken exited with code 3 right after it started"), "{}", o.comment);
    assert!(o.comment.contains("its last output:\n"), "{}", o.comment);
    assert!(o.comment.contains("no config at /etc/broken.toml"), "{}", o.comment);
    s.sup.shutdown().await;
}

#[tokio::test]
async fn a_crash_is_an_event_and_restarts_with_backoff() {
    // a short start grace, so a process living 0.5 s counts as started
    let mut s = setup_with(Options { start_grace: Duration::from_millis(50), ..Options::default() });
    let o = s.sup.ensure_running(&sh("crashy", "echo run; sleep 0.5; exit 3"), false, false).await;
    assert!(o.result, "{o:?}");
    let first = o.changes["pid"].as_u64().unwrap();
    let crashed = s.next("crashy/crashed").await;
    assert_eq!(crashed.data["exit_code"], json!(3));
    assert_eq!(crashed.data["pid"], json!(first));
    let restarted = s.next("crashy/restarted").await;
    assert_eq!(restarted.data["attempt"], json!(1));
    assert!(restarted.data["delay_ms"].as_u64().unwrap() <= 200);
    assert_ne!(restarted.data["pid"], json!(first));
    let crashed = s.next("crashy/crashed").await;
    assert_eq!(crashed.data["pid"], restarted.data["pid"]);
    let restarted = s.next("crashy/restarted").await;
    assert_eq!(restarted.data["attempt"], json!(2));
    let info = s.sup.status("crashy").await.unwrap();
    assert!(info.restarts >= 2);
    assert_eq!(info.last_exit.as_deref(), Some("exited with code 3"));
    let log = s.sup.logs("crashy", 1000).await.unwrap();
    assert!(log.contains("exited with code 3 after"), "{log}");
    s.sup.shutdown().await;
}

#[tokio::test]
async fn health_checks_tcp_http_and_exec() {
    let mut s = setup();
    // a port that accepts connections (for tcp)
    let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = port.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = port.accept().await {
            drop(conn);
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // a web server that is healthy, then answers 503
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&served);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let answer = if n < 2 { "HTTP/1.0 200 OK\r\n\r\nok" } else { "HTTP/1.0 503 Unavailable\r\n\r\n" };
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let health = |check| Some(Health { check, interval_ms: 100, timeout_ms: 2_000, retries: 2 });
    let cases = [
        ("tcp-up", HealthCheck::Tcp(open.to_string()), true),
        ("tcp-down", HealthCheck::Tcp(closed.to_string()), false),
        ("exec-up", HealthCheck::Exec(vec!["sh".into(), "-c".into(), "test -n \"$MARK\"".into()]), true),
        ("exec-down", HealthCheck::Exec(vec!["false".into()]), false),
    ];
    for (name, check, healthy) in cases {
        let mut spec = sh(name, "exec sleep 30");
        spec.env.insert("MARK".into(), "set".into());
        spec.health = health(check);
        assert!(s.sup.ensure_running(&spec, false, false).await.result);
        let e = s.next(&format!("{name}/health")).await;
        assert_eq!(e.data["healthy"], json!(healthy), "{name}: {e:?}");
        let info = s.sup.status(name).await.unwrap();
        let want = if healthy { HealthState::Healthy } else { HealthState::Unhealthy };
        assert_eq!(info.health, Some(want), "{name}");
    }
    let mut web = sh("web", "exec sleep 30");
    web.health = health(HealthCheck::Http(format!("http://{addr}/health")));
    assert!(s.sup.ensure_running(&web, false, false).await.result);
    assert_eq!(s.next("web/health").await.data["healthy"], json!(true));
    let e = s.next("web/health").await;
    assert_eq!(e.data["healthy"], json!(false));
    assert!(e.data["error"].as_str().unwrap().ends_with("answered HTTP/1.0 503 Unavailable"), "{e:?}");
    s.sup.shutdown().await;
}

#[tokio::test]
async fn output_is_rotated_by_size() {
    let options = Options { rotation: Rotation { max_bytes: 4096, keep: 2 }, ..Options::default() };
    let s = setup_with(options);
    let script = "i=0; while [ $i -lt 2000 ]; do echo \"line $i ..............................\"; i=$((i+1)); done; \
                  echo done; exec sleep 30";
    s.sup.ensure_running(&sh("chatty", script), false, false).await;
    // 80 kB in chunks of at most 16 kB: several rotations, whatever the chunks
    let tail = s.log_with("chatty", "done").await;
    let dir = s.log_dir();
    for file in ["chatty.log", "chatty.log.1", "chatty.log.2"] {
        let size = std::fs::metadata(dir.join(file)).unwrap().len();
        assert!(size <= 4096 + 16 * 1024, "{file}: {size} bytes");
    }
    assert!(!dir.join("chatty.log.3").exists());
    assert!(tail.contains("line 1999"), "{tail}");
    let last = s.sup.logs("chatty", 2).await.unwrap();
    assert_eq!(last, "line 1999 ..............................\ndone\n");
    s.sup.shutdown().await;
}

#[tokio::test]
async fn a_changed_spec_restarts_with_it_and_retain_stops_the_rest() {
    let s = setup();
    let mut spec = sh("greeter", "echo \"hello $WHO\"; exec sleep 30");
    spec.env.insert("WHO".into(), "world".into());
    let first = s.sup.ensure_running(&spec, false, false).await.changes["pid"].as_u64().unwrap() as u32;
    s.log_with("greeter", "hello world").await;
    spec.env.insert("WHO".into(), "drover".into());
    let o = s.sup.ensure_running(&spec, false, false).await;
    assert_eq!(o.comment, format!("restarted greeter: its env changed (pid {})", o.changes["pid"]));
    s.log_with("greeter", "hello drover").await;
    until_group_gone(first).await;

    let other = s.sup.ensure_running(&sh("other", "exec sleep 30"), false, false).await;
    let other = other.changes["pid"].as_u64().unwrap() as u32;
    let stopped = s.sup.retain(&BTreeSet::from(["greeter".to_string()])).await;
    assert_eq!(stopped, ["other"]);
    until_group_gone(other).await;
    let names: Vec<String> = s.sup.list().await.into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["greeter"]);
    // its output stays readable after it is forgotten
    assert!(s.sup.logs("other", 10).await.unwrap().contains("killed by SIGTERM"));
    s.sup.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_latest_started_first() {
    let s = setup();
    let order = s.dir.path().join("order");
    for name in ["first", "second", "third"] {
        let mut spec =
            sh(name, "trap 'echo $NAME >> $ORDER; exit 0' TERM; echo up; while :; do sleep 0.05; done");
        spec.env.insert("NAME".into(), name.into());
        spec.env.insert("ORDER".into(), order.display().to_string());
        s.sup.ensure_running(&spec, false, false).await;
        s.log_with(name, "up").await;
    }
    s.sup.shutdown().await;
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "third\nsecond\nfirst\n");
    assert!(s.sup.list().await.iter().all(|d| d.state == DaemonState::Stopped && d.pid.is_none()));
}

#[tokio::test]
async fn runs_as_its_user() {
    let s = setup();
    let nobody = crate::runas::Account::lookup("nobody").unwrap();
    let mut spec = sh("unprivileged", "echo \"uid=$(id -u) home=$HOME\"; exec sleep 30");
    spec.user = Some("nobody".into());
    let o = s.sup.ensure_running(&spec, false, false).await;
    if nix::unistd::geteuid().is_root() {
        assert!(o.result, "{o:?}");
        s.log_with("unprivileged", &format!("uid={} home={}", nobody.uid, nobody.home.display())).await;
    } else {
        assert!(o.comment.contains("switching users needs root"), "{o:?}");
    }
    let mut spec = sh("ghost", "true");
    spec.user = Some("no-such-user-drover".into());
    let o = s.sup.ensure_running(&spec, false, false).await;
    assert!(!o.result);
    assert!(o.comment.starts_with("cannot start ghost: no user named 'no-such-user-drover'"), "{o:?}");
    s.sup.shutdown().await;
}

#[test]
fn orphans_of_a_daemon_are_reaped() {
    if !in_own_process("supervisor::real_tests::orphans_of_a_daemon_are_reaped") {
        return;
    }
    crate::reaper::install().unwrap();
    let me = nix::unistd::getpid().as_raw();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let s = setup();
        // the inner shell exits at once: its background sleep is orphaned while the daemon
        // still runs, so it comes to us (the subreaper), not to the daemon
        let spec = sh("forker", "sh -c 'sleep 1 & echo orphan=$!'; exec sleep 30");
        assert!(s.sup.ensure_running(&spec, false, false).await.result);
        let log = s.log_with("forker", "\norphan=").await;
        let line = log.lines().find_map(|l| l.strip_prefix("orphan=")).unwrap();
        let orphan: i32 = line.parse().unwrap();
        if let Some((_, ppid)) = proc_state(orphan) {
            assert_eq!(ppid, me, "the orphan was not reparented to the subreaper");
        }
        tokio::task::spawn_blocking(move || {
            eventually("the orphan is reaped", || proc_state(orphan).is_none())
        })
        .await
        .unwrap();
        // the daemon itself is still the supervisor's, with its status
        let info = s.sup.status("forker").await.unwrap();
        assert_eq!(info.state, DaemonState::Running);
        s.sup.shutdown().await;
        let info = s.sup.status("forker").await.unwrap();
        assert_eq!(info.last_exit.as_deref(), Some("killed by SIGTERM"));
    });
}

/// A script that starts a process outside its own process group (`setsid`), waits until
/// that process is there, then goes on with `then`. The process writes its pid to
/// `DIR/escapee.pid`; on SIGTERM it writes `DIR/escapee.term` and exits.
fn forking(dir: &std::path::Path, then: &str) -> String {
    let d = dir.display();
    let escapee = format!(
        "trap 'echo term > {d}/escapee.term; exit 0' TERM\n\
         echo $$ > {d}/escapee.tmp && mv {d}/escapee.tmp {d}/escapee.pid\n\
         while :; do sleep 0.05; done\n"
    );
    std::fs::write(dir.join("escapee.sh"), escapee).unwrap();
    format!("setsid sh {d}/escapee.sh & while [ ! -s {d}/escapee.pid ]; do sleep 0.01; done; {then}")
}

fn escaped_pid(dir: &std::path::Path) -> i32 {
    std::fs::read_to_string(dir.join("escapee.pid")).unwrap().trim().parse().unwrap()
}

async fn until_gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while proc_state(pid).is_some_and(|(state, _)| state != 'Z') {
        assert!(tokio::time::Instant::now() < deadline, "pid {pid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_daemon_that_forks_into_the_background_is_reported_and_nothing_of_it_stays() {
    let s = setup();
    let mut spec = sh("bg", &forking(s.dir.path(), "exit 0"));
    spec.restart = render::Restart::Never;
    let o = s.sup.ensure_running(&spec, false, false).await;
    assert!(!o.result, "{o:?}");
    let pid = escaped_pid(s.dir.path());
    // the escaped shell (and the sleep it may be running at that moment)
    let left = o.comment.split("leaving ").nth(1).and_then(|r| r.split(" outside its process group").next());
    assert!(left.is_some_and(|l| l.contains(&pid.to_string())), "{o:?}");
    assert!(o.comment.contains("forks into the background"), "{o:?}");
    until_gone(pid).await;
    // killed, not asked to stop: it is no stop
    assert!(!s.dir.path().join("escapee.term").exists());
}

#[tokio::test]
async fn stopping_a_daemon_also_stops_what_left_its_group() {
    let s = setup();
    // on SIGTERM the main process waits until the escaped one has had its own SIGTERM:
    // the SIGKILL that follows the main process's exit cannot overtake it
    let marker = s.dir.path().join("escapee.term");
    let main = format!(
        "trap 'while [ ! -e {} ]; do sleep 0.01; done; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        marker.display()
    );
    let spec = sh("web", &forking(s.dir.path(), &main));
    let o = s.sup.ensure_running(&spec, false, false).await;
    assert!(o.result, "{o:?}");
    s.log_with("web", "ready").await;
    let pid = escaped_pid(s.dir.path());
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let tag = format!("DROVER_DAEMON=web@{}#", s.log_dir().display());
    assert!(env.split(|&b| b == 0).any(|v| v.starts_with(tag.as_bytes())), "{tag}... not in its environment");

    let o = s.sup.ensure_stopped("web", false).await;
    assert!(o.result, "{o:?}");
    until_gone(pid).await;
    // it got the stop signal itself (else the main process outlives its stop timeout)
    assert!(marker.exists(), "the escaped process never got SIGTERM: {o:?}");
    assert_eq!(o.comment, format!("stopped web (pid {})", o.changes["pid"]));
}

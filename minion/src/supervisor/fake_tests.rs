//! The supervisor's logic against a recording fake of the system, in paused time: starts,
//! restarts with backoff, stops with SIGKILL after the timeout, health, order of shutdown.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use render::{DaemonRunning, Health, HealthCheck, Restart};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use wire::DaemonHealth;
use wire::msg::Event;

use super::health::Prober;
use super::log::LogSink;
use super::sys::{Exit, Spawned, Sys};
use super::*;

/// A process of the fake world: it ends when its exit is sent.
struct Proc {
    exit: oneshot::Sender<Exit>,
    ignores_term: bool,
}

#[derive(Default)]
struct World {
    next_pid: u32,
    /// (pid, argv) of every start.
    spawns: Vec<(u32, Vec<String>)>,
    /// (pgid, signal) of every kill.
    kills: Vec<(u32, Signal)>,
    live: BTreeMap<u32, Proc>,
    /// Processes that left a daemon's group: pid → the DROVER_DAEMON tag they carry.
    escapees: BTreeMap<u32, String>,
    /// (pid, signal) of every signal to a single process.
    pid_kills: Vec<(u32, Signal)>,
    /// Results the next health checks give (then healthy).
    probes: VecDeque<Result<(), String>>,
}

/// The fake: `cmd[0] == "missing"` cannot start; a cmd holding `ignore-term` ignores every
/// signal but SIGKILL; one holding `forks` leaves a process (pid + 1000) outside its group,
/// carrying its DROVER_DAEMON tag.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    /// Ends process `pid` as `exit`.
    fn exit(&self, pid: u32, exit: Exit) {
        let proc = self.world().live.remove(&pid).expect("no such live process");
        proc.exit.send(exit).unwrap();
    }

    fn spawned(&self) -> Vec<u32> {
        self.world().spawns.iter().map(|(pid, _)| *pid).collect()
    }

    fn kills(&self) -> Vec<(u32, Signal)> {
        self.world().kills.clone()
    }

    fn pid_kills(&self) -> Vec<(u32, Signal)> {
        self.world().pid_kills.clone()
    }
}

impl Sys for Fake {
    fn spawn(&mut self, spec: &DaemonRunning, _log: &LogSink) -> Result<Spawned, String> {
        if spec.cmd[0] == "missing" {
            return Err("cannot run 'missing': no such program in PATH".into());
        }
        let mut w = self.world();
        w.next_pid += 1;
        let pid = 100 + w.next_pid;
        let (tx, rx) = oneshot::channel();
        w.live.insert(pid, Proc { exit: tx, ignores_term: spec.cmd.iter().any(|a| a == "ignore-term") });
        w.spawns.push((pid, spec.cmd.clone()));
        if spec.cmd.iter().any(|a| a == "forks") {
            let tag = spec.env.get(super::sys::TAG_VAR).expect("daemons are started with their tag");
            w.escapees.insert(pid + 1000, tag.clone());
        }
        Ok(Spawned { pid, exit: Box::pin(async move { rx.await.unwrap_or(Exit::Unknown) }) })
    }

    fn kill_group(&mut self, pgid: u32, signal: Signal) -> Result<(), Errno> {
        let mut w = self.world();
        w.kills.push((pgid, signal));
        let Some(proc) = w.live.get(&pgid) else { return Err(Errno::ESRCH) };
        if signal == Signal::SIGKILL || !proc.ignores_term {
            let proc = w.live.remove(&pgid).unwrap();
            let _ = proc.exit.send(Exit::Signal(signal as i32));
        }
        Ok(())
    }

    fn escaped(&mut self, tag: &str, _pgid: u32) -> Vec<u32> {
        self.world().escapees.iter().filter(|(_, t)| *t == tag).map(|(pid, _)| *pid).collect()
    }

    fn kill_pid(&mut self, pid: u32, signal: Signal) -> Result<(), Errno> {
        let mut w = self.world();
        w.pid_kills.push((pid, signal));
        w.escapees.remove(&pid).map(|_| ()).ok_or(Errno::ESRCH)
    }

    fn prober(&mut self, spec: &DaemonRunning) -> Option<Prober> {
        spec.health.as_ref()?;
        let world = Arc::clone(&self.0);
        Some(Box::new(move || {
            let result = world.lock().unwrap().probes.pop_front().unwrap_or(Ok(()));
            Box::pin(async move { result })
        }))
    }
}

fn spec(name: &str) -> DaemonRunning {
    super::test_spec(name, vec!["/bin/serve".into(), name.into()])
}

struct Setup {
    sup: Supervisor,
    fake: Fake,
    events: mpsc::UnboundedReceiver<Event>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    let fake = Fake::default();
    let sup = Supervisor::start_with(dir.path().join("daemons"), tx, Options::default(), fake.clone());
    Setup { sup, fake, events, _dir: dir }
}

impl Setup {
    /// The next event whose tag ends with `suffix` (others are skipped).
    async fn next(&mut self, suffix: &str) -> Event {
        loop {
            let event = self.events.recv().await.expect("events channel closed");
            if event.tag.ends_with(suffix) {
                return event;
            }
        }
    }

    /// Every event sent so far, as `<name>/<what>` tags.
    fn drain(&mut self) -> Vec<String> {
        let mut tags = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            tags.push(e.tag.trim_start_matches("daemon/").to_string());
        }
        tags
    }

    async fn state(&self, name: &str) -> DaemonInfo {
        self.sup.status(name).await.expect("daemon not listed")
    }
}

#[tokio::test(start_paused = true)]
async fn starts_once_and_the_same_spec_changes_nothing() {
    let mut s = setup();
    let o = s.sup.ensure_running(&spec("web"), false, false).await;
    assert_eq!((o.result, o.changed), (true, true), "{o:?}");
    assert_eq!(o.comment, "started web (pid 101)");
    assert_eq!(o.changes, json!({"pid": 101}));
    let info = s.state("web").await;
    assert_eq!((info.state, info.pid, info.restarts), (DaemonState::Running, Some(101), 0));

    let o = s.sup.ensure_running(&spec("web"), false, false).await;
    assert_eq!((o.result, o.changed, o.comment.as_str()), (true, false, "web is already running (pid 101)"));
    assert_eq!(s.fake.spawned(), [101]);
    assert_eq!(s.drain(), ["web/started"]);
}

/// A daemon whose health check passes is started then, not at the end of its start grace
/// (0.5 s); one without a check is started at the end of the grace.
#[tokio::test(start_paused = true)]
async fn a_passing_health_check_ends_the_start_early() {
    let s = setup();
    let mut checked = spec("api");
    checked.health = Some(Health {
        check: HealthCheck::Tcp("127.0.0.1:1".into()),
        interval_ms: 10_000,
        timeout_ms: 500,
        retries: 3,
    });
    s.fake.world().probes.extend([Err("refused".to_string())]);
    let start = tokio::time::Instant::now();
    let o = s.sup.ensure_running(&checked, false, false).await;
    assert_eq!((o.result, o.comment.as_str()), (true, "started api (pid 101)"), "{o:?}");
    // checks at 50 ms (refused) and 150 ms (passes)
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    assert_eq!(s.state("api").await.state, DaemonState::Running);

    let start = tokio::time::Instant::now();
    s.sup.ensure_running(&spec("web"), false, false).await;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn test_mode_changes_nothing() {
    let s = setup();
    let o = s.sup.ensure_running(&spec("web"), false, true).await;
    assert_eq!((o.result, o.changed, o.comment.as_str()), (true, true, "web would be started"));
    assert!(s.sup.list().await.is_empty());
    s.sup.ensure_running(&spec("web"), false, false).await;
    let mut changed = spec("web");
    changed.cmd.push("--fast".into());
    let o = s.sup.ensure_running(&changed, false, true).await;
    assert_eq!(o.comment, "would restart web: its cmd changed");
    let o = s.sup.ensure_running(&spec("web"), true, true).await;
    assert_eq!(o.comment, "would restart web: a watched state changed");
    let o = s.sup.ensure_stopped("web", true).await;
    assert_eq!((o.changed, o.comment.as_str()), (true, "web (pid 101) would be stopped"));
    assert_eq!(s.fake.spawned(), [101]);
    assert!(s.fake.kills().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_changed_spec_restarts_and_supervision_changes_apply_in_place() {
    let mut s = setup();
    s.sup.ensure_running(&spec("web"), false, false).await;
    let mut changed = spec("web");
    changed.env.insert("PORT".into(), "8080".into());
    changed.stop_timeout_ms = 2_000;
    let o = s.sup.ensure_running(&changed, false, false).await;
    assert_eq!((o.result, o.changed), (true, true), "{o:?}");
    assert_eq!(o.comment, "restarted web: its env changed (pid 102)");
    assert_eq!(o.changes, json!({"restarted": true, "changed": ["env", "stop_timeout"], "pid": 102}));
    assert_eq!(s.fake.kills()[0], (101, Signal::SIGTERM));

    // a watched state changed: same spec, restarted anyway
    let o = s.sup.ensure_running(&changed, true, false).await;
    assert_eq!(o.comment, "restarted web: a watched state changed (pid 103)");

    // only how it is supervised changed: no new process
    changed.restart = Restart::OnFailure;
    changed.stop_signal = "SIGINT".into();
    let o = s.sup.ensure_running(&changed, false, false).await;
    assert_eq!(o.comment, "updated web's restart, stop_signal without a restart (pid 103)");
    assert_eq!(s.fake.spawned(), [101, 102, 103]);
    // and the new stop signal is the one used
    s.sup.ensure_stopped("web", false).await;
    assert_eq!(s.fake.kills().iter().rev().nth(1), Some(&(103, Signal::SIGINT)));

    let tags = s.drain();
    let restarted = tags.iter().filter(|t| *t == "web/restarted").count();
    assert_eq!(restarted, 2, "{tags:?}");
    assert_eq!(s.state("web").await.restarts, 2);
}

#[tokio::test(start_paused = true)]
async fn crashes_restart_with_a_doubling_jittered_backoff_that_resets() {
    let mut s = setup();
    s.sup.ensure_running(&spec("web"), false, false).await;
    let mut pid = 101;
    let mut ceiling = Duration::from_millis(200);
    for attempt in 1..=10u64 {
        s.fake.exit(pid, Exit::Code(3));
        let crashed = s.next("/crashed").await;
        assert_eq!(crashed.tag, "daemon/web/crashed");
        assert_eq!(
            (crashed.data["exit_code"].clone(), crashed.data["restart"].clone()),
            (json!(3), json!(true))
        );
        assert_eq!(crashed.data["pid"], json!(pid));
        let restarted = s.next("/restarted").await;
        let delay = Duration::from_millis(restarted.data["delay_ms"].as_u64().unwrap());
        assert_eq!(restarted.data["attempt"], json!(attempt));
        assert_eq!(restarted.data["reason"], json!("crashed"));
        assert!(
            delay >= ceiling / 2 && delay <= ceiling,
            "attempt {attempt}: {delay:?} not within {ceiling:?}"
        );
        pid = restarted.data["pid"].as_u64().unwrap() as u32;
        ceiling = (ceiling * 2).min(Duration::from_secs(30));
    }
    assert_eq!(ceiling, Duration::from_secs(30));
    let info = s.state("web").await;
    assert_eq!((info.restarts, info.last_exit.as_deref()), (10, Some("exited with code 3")));

    // up for longer than the reset time: back to the shortest backoff
    tokio::time::sleep(Duration::from_secs(11)).await;
    s.fake.exit(pid, Exit::Signal(9));
    let crashed = s.next("/crashed").await;
    assert_eq!(crashed.data["signal"], json!("SIGKILL"));
    let restarted = s.next("/restarted").await;
    assert_eq!(restarted.data["attempt"], json!(1));
    assert!(restarted.data["delay_ms"].as_u64().unwrap() <= 200);
}

#[tokio::test(start_paused = true)]
async fn restart_policies() {
    let mut s = setup();
    let mut on_failure = spec("once");
    on_failure.restart = Restart::OnFailure;
    let mut never = spec("never");
    never.restart = Restart::Never;
    s.sup.ensure_running(&on_failure, false, false).await;
    s.sup.ensure_running(&never, false, false).await;

    s.fake.exit(101, Exit::Code(0));
    assert_eq!(s.next("/crashed").await.data["restart"], json!(false));
    assert_eq!(s.state("once").await.state, DaemonState::Stopped);
    s.fake.exit(102, Exit::Code(1));
    assert_eq!(s.next("/crashed").await.data["restart"], json!(false));
    let info = s.state("never").await;
    assert_eq!((info.state, info.pid), (DaemonState::Failed, None));
    // a later apply starts them again
    let o = s.sup.ensure_running(&never, false, false).await;
    assert_eq!(o.comment, "started never (pid 103; it had failed)");
}

#[tokio::test(start_paused = true)]
async fn stop_signals_the_group_then_kills_it_after_the_timeout() {
    let s = setup();
    s.sup.ensure_running(&spec("polite"), false, false).await;
    let o = s.sup.ensure_stopped("polite", false).await;
    assert_eq!((o.result, o.changed, o.comment.as_str()), (true, true, "stopped polite (pid 101)"));
    assert_eq!(
        s.fake.kills(),
        [(101, Signal::SIGTERM), (101, Signal::SIGKILL)],
        "TERM, then KILL of what is left"
    );

    let mut stubborn = spec("stubborn");
    stubborn.cmd.push("ignore-term".into());
    s.sup.ensure_running(&stubborn, false, false).await;
    let before = tokio::time::Instant::now();
    let o = s.sup.ensure_stopped("stubborn", false).await;
    assert_eq!(o.comment, "killed stubborn (pid 102) with SIGKILL: it outlived SIGTERM by 10s");
    assert_eq!(before.elapsed(), Duration::from_secs(10), "paused time: exactly the stop timeout");
    assert_eq!(&s.fake.kills()[2..4], [(102, Signal::SIGTERM), (102, Signal::SIGKILL)]);
    let info = s.state("stubborn").await;
    assert_eq!((info.state, info.pid), (DaemonState::Stopped, None));

    let o = s.sup.ensure_stopped("stubborn", false).await;
    assert_eq!((o.result, o.changed, o.comment.as_str()), (true, false, "stubborn is already stopped"));
    let o = s.sup.ensure_stopped("nobody", false).await;
    assert_eq!(
        (o.result, o.changed, o.comment.as_str()),
        (true, false, "nobody is not running (not supervised)")
    );
}

#[tokio::test(start_paused = true)]
async fn dying_at_once_or_not_starting_fails_the_state() {
    let mut s = setup();
    let sup = s.sup.clone();
    let start = tokio::spawn(async move { sup.ensure_running(&spec("flaky"), false, false).await });
    while s.fake.spawned().is_empty() {
        tokio::task::yield_now().await;
    }
    s.fake.exit(101, Exit::Code(2));
    let o = start.await.unwrap();
    assert!(!o.result, "{o:?}");
    assert!(o.comment.starts_with("flaky exited with code 2 right after it started"), "{}", o.comment);
    assert!(o.comment.contains("retrying in"), "{}", o.comment);
    // the state answers once the daemon's last output had a moment to reach its log (see
    // real_tests for the quote); by then it may be on its way back up
    assert!(matches!(s.state("flaky").await.state, DaemonState::Backoff | DaemonState::Starting));

    let mut missing = spec("ghost");
    missing.cmd = vec!["missing".into()];
    missing.restart = Restart::Never;
    let o = s.sup.ensure_running(&missing, false, false).await;
    assert!(!o.result);
    assert_eq!(o.comment, "cannot start ghost: cannot run 'missing': no such program in PATH");
    let crashed = s.next("ghost/crashed").await;
    assert_eq!(crashed.data["error"], json!("cannot run 'missing': no such program in PATH"));
    assert_eq!(s.state("ghost").await.state, DaemonState::Failed);

    let mut bad = spec("../etc");
    bad.name = "../etc".into();
    let o = s.sup.ensure_running(&bad, false, false).await;
    assert!(!o.result && o.comment.contains("cannot name its log file"), "{o:?}");
}

#[tokio::test(start_paused = true)]
async fn stopping_during_backoff_cancels_the_restart() {
    let mut s = setup();
    s.sup.ensure_running(&spec("web"), false, false).await;
    s.fake.exit(101, Exit::Code(1));
    s.next("/crashed").await;
    assert_eq!(s.state("web").await.state, DaemonState::Backoff);
    let o = s.sup.ensure_stopped("web", false).await;
    assert_eq!((o.changed, o.comment.as_str()), (true, "stopped web (it was waiting to restart)"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.fake.spawned(), [101]);
    assert_eq!(s.state("web").await.state, DaemonState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn restart_on_request() {
    let mut s = setup();
    assert!(matches!(s.sup.restart("web").await, Err(SupervisorError::Unknown(_))));
    s.sup.ensure_running(&spec("web"), false, false).await;
    let o = s.sup.restart("web").await.unwrap();
    assert_eq!((o.result, o.comment.as_str()), (true, "restarted web (pid 102)"));
    let restarted = s.next("/restarted").await;
    assert_eq!(restarted.data["reason"], json!("requested"));
    s.sup.ensure_stopped("web", false).await;
    let o = s.sup.restart("web").await.unwrap();
    assert_eq!(o.comment, "restarted web (pid 103)");
}

#[tokio::test(start_paused = true)]
async fn retain_and_shutdown_stop_latest_started_first() {
    let s = setup();
    for name in ["db", "cache", "worker", "web"] {
        let mut spec = spec(name);
        if name == "cache" {
            spec.cmd.push("ignore-term".into());
        }
        s.sup.ensure_running(&spec, false, false).await;
    }
    let keep: BTreeSet<String> = ["db".to_string(), "cache".to_string()].into();
    let stopped = s.sup.retain(&keep).await;
    assert_eq!(stopped, ["web", "worker"]);
    let names: Vec<String> = s.sup.list().await.into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["db", "cache"]);
    let terms: Vec<u32> =
        s.fake.kills().iter().filter(|(_, sig)| *sig == Signal::SIGTERM).map(|(pid, _)| *pid).collect();
    assert_eq!(terms, [104, 103]);

    // cache ignores SIGTERM: db is signalled only once cache is gone
    s.sup.shutdown().await;
    let tail: Vec<(u32, Signal)> = s.fake.kills()[4..].to_vec();
    assert_eq!(
        tail,
        [
            (102, Signal::SIGTERM),
            (102, Signal::SIGKILL),
            (102, Signal::SIGKILL),
            (101, Signal::SIGTERM),
            (101, Signal::SIGKILL)
        ]
    );
    assert!(s.sup.list().await.iter().all(|d| d.state == DaemonState::Stopped));
    let o = s.sup.ensure_running(&spec("db"), false, false).await;
    assert_eq!((o.result, o.comment.as_str()), (false, "not starting db: the minion is shutting down"));
}

#[tokio::test(start_paused = true)]
async fn health_changes_are_events() {
    let mut s = setup();
    let mut checked = spec("api");
    checked.health = Some(Health {
        check: HealthCheck::Tcp("127.0.0.1:1".into()),
        interval_ms: 1_000,
        timeout_ms: 500,
        retries: 2,
    });
    {
        let mut w = s.fake.world();
        w.probes.extend([Err("refused".to_string()), Ok(()), Err("refused".into()), Err("reset".into())]);
    }
    s.sup.ensure_running(&checked, false, false).await;
    let e = s.next("/health").await;
    assert_eq!(e.tag, "daemon/api/health");
    assert_eq!(e.data, json!({"name": "api", "healthy": true, "error": null}));
    let e = s.next("/health").await;
    assert_eq!(e.data, json!({"name": "api", "healthy": false, "error": "reset"}));
    let info = s.state("api").await;
    assert_eq!((info.health, info.health_error.as_deref()), (Some(HealthState::Unhealthy), Some("reset")));
    // healthy again by default; then a crash ends its health
    let e = s.next("/health").await;
    assert_eq!(e.data["healthy"], json!(true));
    s.fake.exit(101, Exit::Code(1));
    let e = s.next("/health").await;
    assert_eq!(e.data, json!({"name": "api", "healthy": false, "error": "the process exited with code 1"}));
}

/// Waits (in paused time) until the published health is `want`: (name, state, problem).
async fn wait(
    health: &mut watch::Receiver<Vec<DaemonHealth>>,
    what: &str,
    want: Vec<(&str, &str, Option<&str>)>,
) {
    let found = tokio::time::timeout(
        Duration::from_secs(600),
        health.wait_for(|h| {
            let now: Vec<(&str, &str, Option<&str>)> =
                h.iter().map(|d| (d.name.as_str(), d.state.as_str(), d.problem.as_deref())).collect();
            now == want && h.iter().all(|d| d.healthy == d.problem.is_none())
        }),
    )
    .await
    .is_ok();
    assert!(found, "{what}: never {want:?}; last {:?}", *health.borrow());
}

/// The health the minion reports is each daemon's state and check, in start order; a
/// daemon stopped on purpose is no problem.
#[tokio::test(start_paused = true)]
async fn daemon_health_is_published_as_it_changes() {
    let s = setup();
    let mut health = s.sup.health();
    let mut checked = spec("api");
    checked.health = Some(Health {
        check: HealthCheck::Tcp("127.0.0.1:1".into()),
        interval_ms: 1_000,
        timeout_ms: 500,
        retries: 3,
    });
    // checks at 50, 150, 350 and 750 ms after the start refused (the start grace ends at
    // 500 ms): running, not passed yet; then healthy
    s.fake.world().probes.extend(std::iter::repeat_n(Err("refused".to_string()), 4).chain([Ok(())]));
    s.sup.ensure_running(&spec("web"), false, false).await;
    s.sup.ensure_running(&checked, false, false).await;
    wait(
        &mut health,
        "api's check failing",
        vec![
            ("web", "running", None),
            ("api", "running", Some("its health check has not passed yet: refused")),
        ],
    )
    .await;
    wait(&mut health, "both healthy", vec![("web", "running", None), ("api", "running", None)]).await;

    s.fake.exit(101, Exit::Code(1));
    wait(
        &mut health,
        "web crashed",
        vec![("web", "backoff", Some("exited with code 1 (restarting)")), ("api", "running", None)],
    )
    .await;
    wait(&mut health, "web started again", vec![("web", "running", None), ("api", "running", None)]).await;

    let mut once = spec("once");
    once.restart = Restart::Never;
    s.sup.ensure_running(&once, false, false).await;
    s.fake.exit(104, Exit::Code(2));
    wait(
        &mut health,
        "once failed",
        vec![
            ("web", "running", None),
            ("api", "running", None),
            ("once", "failed", Some("exited with code 2 (not restarted)")),
        ],
    )
    .await;
    s.sup.ensure_stopped("api", false).await;
    wait(
        &mut health,
        "api stopped",
        vec![
            ("web", "running", None),
            ("api", "stopped", None),
            ("once", "failed", Some("exited with code 2 (not restarted)")),
        ],
    )
    .await;
}

#[test]
fn durations_read_well() {
    assert_eq!(human(Duration::from_millis(300)), "300ms");
    assert_eq!(human(Duration::from_secs(10)), "10s");
    assert_eq!(human(Duration::from_millis(1500)), "1.5s");
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_forks_into_the_background_is_told_apart_and_what_it_left_killed() {
    let mut s = setup();
    let mut bg = super::test_spec("bg", vec!["/bin/serve".into(), "forks".into()]);
    bg.restart = Restart::Never;
    let start = tokio::spawn({
        let sup = s.sup.clone();
        let bg = bg.clone();
        async move { sup.ensure_running(&bg, false, false).await }
    });
    s.next("bg/started").await;
    s.fake.exit(101, Exit::Code(0));
    let o = start.await.unwrap();
    assert!(!o.result, "{o:?}");
    assert!(o.comment.contains("exited with code 0, leaving pid 1101 outside its process group"), "{o:?}");
    assert!(o.comment.contains("run it in the foreground"), "{o:?}");
    assert_eq!(s.fake.pid_kills(), [(1101, Signal::SIGKILL)]);
    let crashed = s.next("bg/crashed").await;
    assert_eq!(crashed.data["escaped"], json!([1101]), "{crashed:?}");
    let last_exit = s.state("bg").await.last_exit.unwrap();
    assert!(last_exit.contains("it forks into the background"), "{last_exit}");

    // a running daemon's stop signal reaches what left its group, as SIGKILL does later
    let mut web = spec("web");
    web.cmd.push("forks".into());
    s.sup.ensure_running(&web, false, false).await;
    let o = s.sup.ensure_stopped("web", false).await;
    assert!(o.result, "{o:?}");
    assert_eq!(s.fake.pid_kills()[1], (1102, Signal::SIGTERM));
}

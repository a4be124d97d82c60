//! The controller against [`FakeEngine`] and a fake master ([`FakeHost`]), in paused time:
//! every rule of reconcile, rollouts and healing, with the engine calls it makes.
//!
//! The fake master's minions follow the fake engine: a running container's minion is ready
//! (connected, converged, healthy) at once, unless its image version is marked broken, in
//! which case its apply fails as a daemon that exits at start would make it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use render::fleet::{BatchSize, OnFailure, Order, UpdatePolicy};

use super::*;
use crate::fake::FakeEngine;
use crate::host::{Enrollment, HostError};
use crate::record::tests::{file, role};

#[derive(Clone, Default)]
struct FakeHost {
    engine: FakeEngine,
    broken: Arc<Mutex<BTreeSet<String>>>,
    /// Versions whose minions connect but never become ready (nor fail).
    stuck: Arc<Mutex<BTreeSet<String>>>,
    saved: Arc<Mutex<Option<FleetRecord>>>,
    events: Arc<Mutex<Vec<String>>>,
    enrolled: Arc<Mutex<BTreeSet<String>>>,
    /// The generation the controller last said it wants, per slot.
    wanted: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Slots whose minion was told `minion.kill`, in order.
    killed: Arc<Mutex<Vec<String>>>,
    /// Slots whose minion still answers, ready, while its container is not running (the
    /// old task's, while Swarm starts the slot's task on another node).
    lingering: Arc<Mutex<BTreeSet<String>>>,
}

impl FakeHost {
    fn break_version(&self, version: &str) {
        self.broken.lock().unwrap().insert(version.to_string());
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn saved(&self) -> FleetRecord {
        self.saved.lock().unwrap().clone().unwrap_or_default()
    }
}

impl Host for FakeHost {
    async fn minions(&self, ids: Vec<String>) -> BTreeMap<String, MinionView> {
        let broken = self.broken.lock().unwrap().clone();
        let stuck = self.stuck.lock().unwrap().clone();
        let lingering = self.lingering.lock().unwrap().clone();
        let mut out = BTreeMap::new();
        for id in ids {
            let Ok(Some(c)) = self.engine.container(&id).await else { continue };
            if c.state != ContainerState::Running && !lingering.contains(&id) {
                continue;
            }
            let version = c.label(LABEL_VERSION).unwrap_or("").to_string();
            let bad = broken.contains(&version);
            let stuck = stuck.contains(&version);
            out.insert(
                id,
                MinionView {
                    connected: true,
                    generation: c.generation(),
                    converged: (!bad && !stuck).then(|| "c1".into()),
                    failed: bad.then(|| format!("daemon app exited with code 3 (version {version})")),
                    healthy: !bad && !stuck,
                    problem: None,
                },
            );
        }
        out
    }

    async fn enroll(&self, slot: &str) -> Result<Enrollment, HostError> {
        self.enrolled.lock().unwrap().insert(slot.to_string());
        Ok(Enrollment {
            files: vec![FileIn {
                path: "/var/lib/drover/minion/pki/minion.key".into(),
                mode: 0o600,
                data: slot.as_bytes().to_vec(),
            }],
            master_key: "K".into(),
            master_port: 4506,
            master_host: None,
        })
    }

    /// The slot's container dies, as its minion's `minion.kill` makes it.
    async fn kill_minion(&self, slot: &str) -> Result<(), HostError> {
        self.killed.lock().unwrap().push(slot.to_string());
        self.engine.die_task(slot, 137);
        Ok(())
    }

    async fn want(&self, slot: &str, generation: u64) {
        self.wanted.lock().unwrap().insert(slot.to_string(), generation);
    }

    async fn revoke(&self, slot: &str) -> Result<(), HostError> {
        self.enrolled.lock().unwrap().remove(slot);
        Ok(())
    }

    fn event(&self, fleet: &str, event: &FleetEvent) {
        self.events.lock().unwrap().push(event.tag(fleet));
    }

    async fn save(&self, record: FleetRecord) -> Result<(), HostError> {
        *self.saved.lock().unwrap() = Some(record);
        Ok(())
    }
}

type Fleet = Controller<FakeEngine, FakeHost>;

fn setup(versions: &[&str]) -> (Fleet, FakeEngine, FakeHost) {
    let engine = FakeEngine::new();
    for v in versions {
        let labels = [(LABEL_IMAGE, "app"), (LABEL_VERSION, v)];
        engine.add_image(
            &format!("app:{v}"),
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        );
    }
    let host = FakeHost { engine: engine.clone(), ..FakeHost::default() };
    let fleet = Controller::new(engine.clone(), host.clone(), FleetRecord::default(), Options::default());
    (fleet, engine, host)
}

fn policy(batch: u32, order: Order, on_failure: OnFailure) -> UpdatePolicy {
    UpdatePolicy {
        batch: BatchSize::Count(batch),
        order,
        on_failure,
        min_healthy: Duration::from_secs(2),
        ..UpdatePolicy::default()
    }
}

/// web ×3 (policy given) and db ×1 with a volume.
fn fleet_file(version: &str, web: UpdatePolicy) -> FleetFile {
    let mut w = role(version, 3);
    w.update = web;
    let mut db = role(version, 1);
    db.volumes = vec!["/data".into()];
    file(&[("web", w), ("db", db)])
}

const MINUTE: Duration = Duration::from_secs(60);

async fn up(fleet: &Fleet, version: &str, web: UpdatePolicy) -> Outcome {
    fleet.up(fleet_file(version, web), "c1".into(), MINUTE, &Progress::none()).await.unwrap()
}

/// Engine calls that change something, in order (lists and inspections left out).
fn changes(engine: &FakeEngine) -> Vec<String> {
    engine.calls().into_iter().filter(|c| !c.starts_with("info")).collect()
}

/// Service updates and rollbacks, in order (Swarm).
fn swaps(engine: &FakeEngine) -> Vec<String> {
    changes(engine).into_iter().filter(|c| c.starts_with("update") || c.starts_with("rollback")).collect()
}

fn versions(engine: &FakeEngine) -> BTreeMap<String, String> {
    engine.table().into_iter().map(|(name, (_, image))| (name, image)).collect()
}

#[tokio::test(start_paused = true)]
async fn up_makes_every_slot_once_and_again_changes_nothing() {
    let (fleet, engine, host) = setup(&["1"]);
    let outcome = up(&fleet, "1", UpdatePolicy::default()).await;
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(outcome.ready, ["f-db-1", "f-web-1", "f-web-2", "f-web-3"]);
    let table = engine.table();
    assert_eq!(table.len(), 4);
    assert!(table.values().all(|(state, image)| *state == ContainerState::Running && image == "app:1"));
    // each slot's container: its name, labels, volume, alias, identity
    let db = engine.spec("f-db-1").unwrap();
    assert_eq!(db.labels[LABEL_SLOT], "f-db-1");
    assert_eq!(db.labels[LABEL_ROLE], "db");
    assert_eq!(db.mounts, [Mount { volume: "f-db-1-data".into(), target: "/data".into() }]);
    assert_eq!(db.aliases, ["f-db-1", "db"]);
    assert_eq!(db.env["DROVER_MINION_ID"], "f-db-1");
    assert_eq!(db.env["DROVER_MASTER"], "172.30.0.1:4506");
    assert_eq!(db.files[0].data, b"f-db-1");
    assert!(host.saved().applied.is_some());

    engine.clear_calls();
    let again = up(&fleet, "1", UpdatePolicy::default()).await;
    assert!(again.ok());
    assert!(changes(&engine).is_empty(), "{:?}", changes(&engine));
}

#[tokio::test(start_paused = true)]
async fn up_refuses_what_it_cannot_do_and_changes_nothing() {
    // a version with no image: the versions that exist are named
    let (fleet, engine, _) = setup(&["1", "2"]);
    let err = fleet
        .up(fleet_file("3", UpdatePolicy::default()), "c".into(), MINUTE, &Progress::none())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "image app:3 does not exist (versions built: 1, 2)");
    assert!(engine.table().is_empty());

    // a container drover did not make, named like a slot
    let (fleet, engine, host) = setup(&["1"]);
    engine.add_image("other", Labels::new());
    let mut foreign = crate::controller::slots::container_spec(
        "f",
        &FleetRecord::default()
            .brought_up(fleet_file("1", UpdatePolicy::default()), "c".into())
            .desired()
            .slots["f-web-2"],
        "1",
        1,
        &host.enroll("x").await.unwrap(),
        &FleetNetworks {
            fleet: "f".into(),
            default: NetworkInfo {
                id: "n".into(),
                name: "f".into(),
                labels: Labels::new(),
                gateway: "10.0.0.1".parse().ok(),
            },
            extra: BTreeMap::new(),
        },
    )
    .unwrap();
    foreign.labels.clear();
    foreign.image = "other".into();
    engine.create(&foreign).await.unwrap();
    engine.clear_calls();
    let err = fleet
        .up(fleet_file("1", UpdatePolicy::default()), "c".into(), MINUTE, &Progress::none())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a container named f-web-2 exists that drover did not create"), "{err}");
    assert!(changes(&engine).is_empty(), "{:?}", changes(&engine));
    assert_eq!(engine.table().len(), 1);

    // a fleet for Swarm on an engine in no swarm
    let (fleet, engine, _) = setup(&["1"]);
    let mut swarm = fleet_file("1", UpdatePolicy::default());
    swarm.engine = render::fleet::EngineKind::Swarm;
    let err = fleet.up(swarm.clone(), "c".into(), MINUTE, &Progress::none()).await.unwrap_err();
    assert!(
        err.to_string().contains("says `engine: swarm`, but the Docker engine at fake is in no swarm"),
        "{err}"
    );
    assert!(engine.table().is_empty());

    // a fleet up on one engine does not move to Swarm in place
    let (fleet, engine, _) = setup(&["1"]);
    engine.set_swarm();
    up(&fleet, "1", UpdatePolicy::default()).await;
    let err = fleet.up(swarm, "c".into(), MINUTE, &Progress::none()).await.unwrap_err();
    assert!(
        err.to_string().contains("fleet f runs on this engine; fleet.yaml now says `engine: swarm`"),
        "{err}"
    );

    // an engine that does not answer
    let (fleet, engine, _) = setup(&["1"]);
    engine.set_down(true);
    let err = fleet
        .up(fleet_file("1", UpdatePolicy::default()), "c".into(), MINUTE, &Progress::none())
        .await
        .unwrap_err();
    assert!(matches!(err, FleetError::Engine(EngineError::Unreachable { .. })), "{err}");
}

#[tokio::test(start_paused = true)]
async fn scale_adds_and_removes_slots_of_one_role() {
    let (fleet, engine, host) = setup(&["1"]);
    up(&fleet, "1", UpdatePolicy::default()).await;
    let out = fleet.scale("web", 5, MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    assert_eq!(engine.table().len(), 6);
    let out = fleet.scale("web", 1, MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok());
    assert_eq!(engine.table().keys().cloned().collect::<Vec<_>>(), ["f-db-1", "f-web-1"]);
    // the removed slots' identities are revoked
    assert!(!host.enrolled.lock().unwrap().contains("f-web-2"));
    assert_eq!(host.saved().overrides["web"].replicas, Some(1));
    let err = fleet.scale("nope", 2, MINUTE, &Progress::none()).await.unwrap_err();
    assert_eq!(err.to_string(), "the fleet has no role nope (roles: db, web)");
}

#[tokio::test(start_paused = true)]
async fn stop_first_upgrade_swaps_one_batch_at_a_time_in_the_same_slot() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    up(&fleet, "1", policy(2, Order::StopFirst, OnFailure::Rollback)).await;
    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let rollout = out.rollout.unwrap();
    assert_eq!(rollout.state, RolloutState::Done);
    assert_eq!(rollout.batches, 2);
    assert_eq!(changes(&engine).len(), 12, "{:?}", changes(&engine));
    let v = versions(&engine);
    assert_eq!(v["f-web-1"], "app:2");
    assert_eq!(v["f-web-3"], "app:2");
    assert_eq!(v["f-db-1"], "app:1");
    // slot by slot: the old container went before the new one came
    for slot in ["f-web-1", "f-web-2", "f-web-3"] {
        let calls: Vec<String> = changes(&engine).into_iter().filter(|c| c.ends_with(slot)).collect();
        assert_eq!(
            calls,
            [
                format!("stop {slot}"),
                format!("remove {slot}"),
                format!("create {slot}"),
                format!("start {slot}")
            ]
        );
    }
    // batch 2 started after batch 1 was ready
    let calls = changes(&engine);
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(pos("start f-web-2") < pos("stop f-web-3"));
}

#[tokio::test(start_paused = true)]
async fn start_first_starts_the_new_container_before_the_old_one_goes() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    up(&fleet, "1", policy(1, Order::StartFirst, OnFailure::Rollback)).await;
    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let calls: Vec<String> = changes(&engine).into_iter().filter(|c| c.contains("f-web-1")).collect();
    assert_eq!(
        calls,
        [
            "rename f-web-1 f-web-1.old",
            "create f-web-1",
            "start f-web-1",
            "stop f-web-1.old",
            "remove f-web-1.old"
        ]
    );
    assert_eq!(engine.table().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_broken_version_is_rolled_back_at_the_first_batch() {
    let (fleet, engine, host) = setup(&["1", "3"]);
    host.break_version("3");
    up(&fleet, "1", policy(1, Order::StopFirst, OnFailure::Rollback)).await;
    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "3", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(!out.ok());
    let rollout = out.rollout.unwrap();
    assert_eq!(rollout.state, RolloutState::RolledBack);
    let reason = rollout.reason.unwrap();
    assert!(
        reason.contains("f-web-1 failed to become ready at 3: apply failed: daemon app exited with code 3"),
        "{reason}"
    );
    assert!(reason.contains("(log of f-web-1)"), "the container's last lines: {reason}");
    // every slot runs 1; the other slots were never touched
    assert!(versions(&engine).values().all(|v| v == "app:1"));
    assert!(changes(&engine).iter().all(|c| c.ends_with("f-web-1")), "{:?}", changes(&engine));
    // the record wants what runs
    assert_eq!(host.saved().desired().slots["f-web-2"].version, "1");
    assert_eq!(host.saved().rollouts.last().unwrap().state, RolloutState::RolledBack);
    assert!(host.events().iter().any(|t| t == "drover/fleet/f/rollout/1/rolled-back"), "{:?}", host.events());
}

#[tokio::test(start_paused = true)]
async fn a_start_first_failure_gives_the_old_container_its_name_back() {
    let (fleet, engine, host) = setup(&["1", "3"]);
    host.break_version("3");
    up(&fleet, "1", policy(1, Order::StartFirst, OnFailure::Rollback)).await;
    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "3", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert_eq!(out.rollout.unwrap().state, RolloutState::RolledBack);
    let calls: Vec<String> = changes(&engine).into_iter().filter(|c| c.contains("f-web-1")).collect();
    assert_eq!(
        calls,
        [
            "rename f-web-1 f-web-1.old",
            "create f-web-1",
            "start f-web-1",
            "remove f-web-1",
            "rename f-web-1.old f-web-1"
        ]
    );
    assert!(versions(&engine).values().all(|v| v == "app:1"));
}

#[tokio::test(start_paused = true)]
async fn pause_and_continue_on_failure() {
    // pause: the failed slot goes back, the rollout stops, the rest waits
    let (fleet, engine, host) = setup(&["1", "3"]);
    host.break_version("3");
    up(&fleet, "1", policy(1, Order::StopFirst, OnFailure::Pause)).await;
    let out =
        fleet.upgrade(&["web".into()], "3", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert_eq!(out.rollout.unwrap().state, RolloutState::Paused);
    assert!(versions(&engine).values().all(|v| v == "app:1"));

    // continue with a ratio of 1: every failure is reverted, the rollout goes through
    let (fleet, engine, host) = setup(&["1", "3"]);
    host.break_version("3");
    let mut p = policy(1, Order::StopFirst, OnFailure::Continue);
    p.max_failure_ratio = 1.0;
    up(&fleet, "1", p).await;
    let out =
        fleet.upgrade(&["web".into()], "3", PolicyOverride::default(), &Progress::none()).await.unwrap();
    let rollout = out.rollout.unwrap();
    assert_eq!(rollout.state, RolloutState::Done);
    assert_eq!(rollout.counts(), (0, 3, 0));
    assert!(versions(&engine).values().all(|v| v == "app:1"));
}

#[tokio::test(start_paused = true)]
async fn undo_puts_the_last_rollout_back() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    up(&fleet, "1", policy(3, Order::StopFirst, OnFailure::Rollback)).await;
    fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    let out = fleet.undo(&Progress::none()).await.unwrap();
    let rollout = out.rollout.unwrap();
    assert_eq!(rollout.state, RolloutState::Done);
    assert_eq!(rollout.undoes, Some(1));
    assert!(versions(&engine).values().all(|v| v == "app:1"));
    // undo again undoes the undo, as `kubectl rollout undo` does
    let again = fleet.undo(&Progress::none()).await.unwrap().rollout.unwrap();
    assert_eq!(again.undoes, Some(2));
    assert!(versions(&engine).iter().filter(|(k, _)| k.starts_with("f-web")).all(|(_, v)| v == "app:2"));
}

#[tokio::test(start_paused = true)]
async fn a_rollout_cut_short_by_a_master_restart_is_resumed() {
    let (fleet, engine, host) = setup(&["1", "2"]);
    up(&fleet, "1", policy(1, Order::StopFirst, OnFailure::Rollback)).await;
    // the master dies in the middle of batch 2 of 3: slot 1 at 2, slot 2 removed, its
    // replacement not yet made
    let mut record = host.saved();
    record.overrides.entry("web".into()).or_default().version = Some("2".into());
    let desired = record.desired();
    let mut rollout = fleet.new_rollout(
        &desired,
        &["f-web-1", "f-web-2", "f-web-3"].map(|s| crate::plan::Change {
            slot: s.into(),
            role: "web".into(),
            from: "1".into(),
            to: "2".into(),
        }),
        &PolicyOverride::default(),
    );
    let Step::Swap { slots, .. } = rollout.next_step() else { panic!() };
    let network = FleetNetworks {
        fleet: "f".into(),
        default: engine.network("f").await.unwrap().unwrap(),
        extra: BTreeMap::new(),
    };
    let outcomes = fleet
        .swap_all(&rollout, &slots, Order::StopFirst, &network, &desired, false, &Progress::none())
        .await;
    rollout.swapped(outcomes);
    let Step::Swap { slots, .. } = rollout.next_step() else { panic!() };
    assert_eq!(slots, ["f-web-2"]);
    let web2 = engine.container("f-web-2").await.unwrap().unwrap();
    engine.remove(&web2.id).await.unwrap();
    record.put_rollout(rollout);
    drop(fleet);

    // a new master with that record
    let fleet = Controller::new(engine.clone(), host.clone(), record, Options::default());
    let resumed = fleet.resume().await.unwrap().unwrap();
    assert_eq!(resumed.state, RolloutState::Done);
    assert!(
        versions(&engine).iter().filter(|(k, _)| k.starts_with("f-web")).all(|(_, v)| v == "app:2"),
        "{:?}",
        versions(&engine)
    );
    assert_eq!(engine.table().len(), 4, "no slot left empty");
    assert!(host.events().iter().any(|t| t == "drover/fleet/f/note"));
    // nothing more to resume
    assert!(fleet.resume().await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_second_operation_is_refused_naming_the_first() {
    let (fleet, _engine, host) = setup(&["1", "2"]);
    up(&fleet, "1", UpdatePolicy { min_healthy: Duration::from_secs(30), ..UpdatePolicy::default() }).await;
    let f2 = fleet.clone();
    let first = tokio::spawn(async move {
        f2.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await
    });
    // let the first take the lock
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = fleet.scale("web", 1, MINUTE, &Progress::none()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "upgrade of web to 2 is running; wait for it, or see `drover rollout status`"
    );
    assert!(first.await.unwrap().unwrap().ok());
    drop(host);
}

#[tokio::test(start_paused = true)]
async fn a_dead_container_is_replaced_in_its_slot_and_a_slot_that_keeps_dying_is_given_up() {
    let (fleet, engine, host) = setup(&["1"]);
    up(&fleet, "1", UpdatePolicy::default()).await;
    let token = tokio_util::sync::CancellationToken::new();
    let healer = fleet.spawn_healer(token.clone());
    tokio::time::sleep(Duration::from_millis(10)).await;

    let before = engine.container("f-db-1").await.unwrap().unwrap();
    engine.die("f-db-1", 137);
    let deadline = tokio::time::Instant::now() + MINUTE;
    loop {
        let now = engine.container("f-db-1").await.unwrap().unwrap();
        if now.id != before.id && now.state == ContainerState::Running {
            // same slot, same volume, same version, newer generation
            assert_eq!(engine.spec("f-db-1").unwrap().mounts[0].volume, "f-db-1-data");
            assert_eq!(now.label(LABEL_VERSION), Some("1"));
            assert!(now.generation() > before.generation());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(host.events().iter().any(|t| t == "drover/fleet/f/slot/f-db-1/replaced"));

    // it keeps dying: replaced with backoff, then given up
    for _ in 0..4 {
        let id = engine.container("f-db-1").await.unwrap().unwrap().id;
        engine.die("f-db-1", 1);
        let deadline = tokio::time::Instant::now() + MINUTE;
        while !host.events().iter().any(|t| t == "drover/fleet/f/slot/f-db-1/gave-up") {
            let c = engine.container("f-db-1").await.unwrap().unwrap();
            if c.id != id && c.state == ContainerState::Running {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "neither replaced nor given up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(host.events().iter().any(|t| t == "drover/fleet/f/slot/f-db-1/gave-up"), "{:?}", host.events());
    let ps = fleet.ps(None).await.unwrap();
    let db = ps.iter().find(|s| s.slot == "f-db-1").unwrap();
    assert!(db.problem.as_deref().unwrap().contains("given up"), "{db:?}");
    // an up makes it again
    let out = up(&fleet, "1", UpdatePolicy::default()).await;
    assert!(out.ok(), "{out:?}");
    token.cancel();
    healer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_death_is_healed_from_its_event_though_the_container_list_still_says_running() {
    let (fleet, engine, host) = setup(&["1"]);
    up(&fleet, "1", UpdatePolicy::default()).await;
    let token = tokio_util::sync::CancellationToken::new();
    let healer = fleet.spawn_healer(token.clone());
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Docker's order: the event first, the list a moment later (longer here than a sweep, so
    // only the event can have the slot healed)
    let before = engine.container("f-db-1").await.unwrap().unwrap();
    engine.die_listed_late("f-db-1", 137, Duration::from_secs(60));
    let healed = "drover/fleet/f/slot/f-db-1/healed";
    let deadline = tokio::time::Instant::now() + MINUTE;
    while !host.events().iter().any(|t| t == healed) {
        assert!(tokio::time::Instant::now() < deadline, "not healed: {:?}", host.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = engine.container("f-db-1").await.unwrap().unwrap();
    assert_ne!(now.id, before.id);
    // one death, told once: the dead container was not stopped as if it ran
    let died = host.events().iter().filter(|t| *t == "drover/fleet/f/slot/f-db-1/died").count();
    assert_eq!(died, 1, "{:?}", host.events());
    assert!(!host.events().iter().any(|t| t == "drover/fleet/f/slot/f-db-1/stopping"), "{:?}", host.events());
    token.cancel();
    healer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_healer_leaves_slots_an_operation_changes_and_replaces_missing_containers() {
    let (fleet, engine, host) = setup(&["1", "2"]);
    up(&fleet, "1", policy(3, Order::StopFirst, OnFailure::Rollback)).await;
    let token = tokio_util::sync::CancellationToken::new();
    let healer = fleet.spawn_healer(token.clone());
    // an upgrade stops every web container: none of that is a death
    fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(!host.events().iter().any(|t| t.ends_with("/replaced")), "{:?}", host.events());
    // a container removed by hand is made again by the sweep
    let id = engine.container("f-web-2").await.unwrap().unwrap().id;
    engine.remove(&id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let c = engine.container("f-web-2").await.unwrap().unwrap();
    assert_eq!((c.state, c.label(LABEL_VERSION)), (ContainerState::Running, Some("2")));
    token.cancel();
    healer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn down_removes_containers_and_networks_and_keeps_volumes_unless_asked() {
    let (fleet, engine, host) = setup(&["1"]);
    up(&fleet, "1", UpdatePolicy::default()).await;
    let out = fleet.down(false, &Progress::none()).await.unwrap();
    assert!(engine.table().is_empty());
    assert!(engine.networks(&["drover.fleet=f"]).await.unwrap().is_empty());
    assert_eq!(engine.volumes(&["drover.fleet=f"]).await.unwrap().len(), 1);
    assert!(out.notes.iter().any(|n| n.contains("kept 1 volumes")), "{:?}", out.notes);
    assert!(host.enrolled.lock().unwrap().is_empty(), "every identity revoked");
    assert!(host.saved().applied.is_none());

    // a second down, with --volumes, takes what the first one kept
    let out = fleet.down(false, &Progress::none()).await.unwrap();
    assert!(out.notes[0].contains("left 1 volumes"), "{:?}", out.notes);
    let out = fleet.down(true, &Progress::none()).await.unwrap();
    assert!(out.notes[0].contains("removed the 1 volumes fleet f left"), "{:?}", out.notes);
    assert!(engine.volumes(&["drover.fleet=f"]).await.unwrap().is_empty());

    up(&fleet, "1", UpdatePolicy::default()).await;
    fleet.down(true, &Progress::none()).await.unwrap();
    assert!(engine.volumes(&["drover.fleet=f"]).await.unwrap().is_empty());
    let out = fleet.down(true, &Progress::none()).await.unwrap();
    assert!(out.notes[0].contains("left no volumes"), "{:?}", out.notes);
}

#[tokio::test(start_paused = true)]
async fn ps_shows_every_slot_and_its_drift() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    up(&fleet, "1", UpdatePolicy::default()).await;
    fleet.upgrade(&["db".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    let head = fleet_file("1", UpdatePolicy::default());
    let ps = fleet.ps(Some(&head)).await.unwrap();
    assert_eq!(ps.len(), 4);
    let db = &ps[0];
    assert_eq!((db.slot.as_str(), db.version.as_str(), db.state.as_str()), ("f-db-1", "2", "running"));
    assert!(db.connected);
    assert_eq!(db.converged.as_deref(), Some("c1"));
    assert_eq!(db.drift.as_deref(), Some("fleet.yaml at HEAD says 1"));
    assert!(ps[1].drift.is_none() && ps[1].problem.is_none(), "{:?}", ps[1]);
    // a dead container shows how it ended
    engine.die("f-web-3", 137);
    let ps = fleet.ps(Some(&head)).await.unwrap();
    assert_eq!(ps[3].state, "exited");
    assert_eq!(ps[3].problem.as_deref(), Some("container exited (exit code 137)"));
}

#[tokio::test(start_paused = true)]
async fn chaos_kills_as_many_containers_as_its_time_allows() {
    let (fleet, engine, _) = setup(&["1"]);
    up(&fleet, "1", UpdatePolicy::default()).await;
    let killed = fleet
        .chaos(Some("web"), Duration::from_secs(10), Duration::from_secs(30), &Progress::none())
        .await
        .unwrap();
    assert_eq!(killed.len(), 3);
    assert!(killed.iter().all(|s| s.starts_with("f-web-")));
    assert_eq!(engine.container("f-db-1").await.unwrap().unwrap().state, ContainerState::Running);
    assert!(fleet.chaos(Some("nope"), MINUTE, MINUTE, &Progress::none()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn on_swarm_chaos_kills_through_the_minion_on_any_node() {
    let (fleet, engine, host) = setup(&["1"]);
    engine.set_swarm();
    fleet.up(swarm_file("1", UpdatePolicy::default()), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    engine.clear_calls();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let killed = fleet
        .chaos(Some("web"), Duration::from_secs(10), Duration::from_secs(30), &Progress::new(tx))
        .await
        .unwrap();
    assert_eq!(killed.len(), 3, "{killed:?}");
    // each slot's minion was told to end itself; the engine killed nothing itself
    assert_eq!(*host.killed.lock().unwrap(), killed);
    assert!(!changes(&engine).iter().any(|c| c.starts_with("kill")), "{:?}", changes(&engine));
    assert_eq!(engine.service("f-db-1").await.unwrap().unwrap().state, ContainerState::Running);
    let mut said = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let FleetEvent::Slot { step, detail: Some(detail), .. } = event
            && step == "killed"
        {
            said.push(detail);
        }
    }
    assert_eq!(said, ["chaos: minion.kill on node-1"; 3]);
}

/// web ×3 on `default` and `data`, db on `data` only, and `cache` on `default` only.
fn segmented_file(version: &str) -> FleetFile {
    let mut w = role(version, 3);
    w.networks = vec!["default".into(), "data".into()];
    w.aliases = vec!["www".into()];
    let mut db = role(version, 1);
    db.networks = vec!["data".into()];
    let cache = role(version, 1);
    FleetFile { networks: vec!["data".into()], ..file(&[("web", w), ("db", db), ("cache", cache)]) }
}

#[tokio::test(start_paused = true)]
async fn extra_networks_are_made_joined_with_the_aliases_and_removed_on_down() {
    let (fleet, engine, _) = setup(&["1"]);
    let outcome = fleet.up(segmented_file("1"), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    // the fleet's network and `data` as f-data, both with the fleet's label
    let mut nets: Vec<String> =
        engine.networks(&["drover.fleet=f"]).await.unwrap().into_iter().map(|n| n.name).collect();
    nets.sort();
    assert_eq!(nets, ["f", "f-data"]);
    assert!(changes(&engine).contains(&"network f-data".to_string()), "{:?}", changes(&engine));
    // web: created on the fleet's network, then joins f-data, with the same names on both
    let web = engine.spec("f-web-2").unwrap();
    assert_eq!((web.network.as_str(), web.networks.as_slice()), ("f", &["f-data".to_string()][..]));
    assert_eq!(web.aliases, ["f-web-2", "web", "www"]);
    let info = engine.container("f-web-2").await.unwrap().unwrap();
    assert_eq!(info.addresses.keys().collect::<Vec<_>>(), ["f", "f-data"]);
    // db: on f-data only, where it reaches the master at that network's gateway
    let db = engine.spec("f-db-1").unwrap();
    assert_eq!((db.network.as_str(), db.networks.len()), ("f-data", 0));
    assert_eq!(db.aliases, ["f-db-1", "db"]);
    assert_eq!(db.env["DROVER_MASTER"], "172.30.0.1:4506");
    // cache: the fleet's network only, as a role that names none
    let cache = engine.spec("f-cache-1").unwrap();
    assert_eq!((cache.network.as_str(), cache.networks.len()), ("f", 0));

    // up again changes nothing; down removes both networks
    engine.clear_calls();
    assert!(fleet.up(segmented_file("1"), "c1".into(), MINUTE, &Progress::none()).await.unwrap().ok());
    assert!(changes(&engine).is_empty(), "{:?}", changes(&engine));
    let out = fleet.down(false, &Progress::none()).await.unwrap();
    assert!(engine.networks(&["drover.fleet=f"]).await.unwrap().is_empty());
    assert!(out.notes.iter().any(|n| n == "removed network f-data"), "{:?}", out.notes);
}

#[tokio::test(start_paused = true)]
async fn a_network_in_the_way_is_refused_and_a_role_changes_networks_at_its_next_swap() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    // a network named like the fleet's `data` that drover did not make
    engine.create_network("f-data", &Labels::new()).await.unwrap();
    engine.clear_calls();
    let err = fleet.up(segmented_file("1"), "c1".into(), MINUTE, &Progress::none()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("a network named f-data exists that is not this fleet's"), "{text}");
    assert!(text.contains("rename the network `data` in fleet.yaml's `networks:`"), "{text}");
    assert!(engine.table().is_empty(), "nothing made");
    engine.remove_network("f-data").await.unwrap();

    // up on the fleet's network only, then db moved to `data`: the running container is kept
    // (as for any change but the version), and its next container joins `data` only
    up(&fleet, "1", UpdatePolicy::default()).await;
    let mut moved = fleet_file("1", UpdatePolicy::default());
    moved.networks = vec!["data".into()];
    moved.roles.get_mut("db").unwrap().networks = vec!["data".into()];
    engine.clear_calls();
    assert!(fleet.up(moved.clone(), "c2".into(), MINUTE, &Progress::none()).await.unwrap().ok());
    assert_eq!(changes(&engine), ["network f-data"]);
    assert_eq!(engine.spec("f-db-1").unwrap().network, "f");
    moved.roles.get_mut("db").unwrap().version = "2".into();
    assert!(fleet.up(moved, "c3".into(), MINUTE, &Progress::none()).await.unwrap().ok());
    let db = engine.spec("f-db-1").unwrap();
    assert_eq!((db.network.as_str(), db.networks.len(), db.image.as_str()), ("f-data", 0, "app:2"));
}

/// The fleet of these tests with `engine: swarm`, on a fake engine in swarm mode.
fn swarm_file(version: &str, web: UpdatePolicy) -> FleetFile {
    FleetFile { engine: render::fleet::EngineKind::Swarm, ..fleet_file(version, web) }
}

#[tokio::test(start_paused = true)]
async fn on_swarm_each_slot_is_a_service_with_its_keys_as_secrets() {
    let (fleet, engine, host) = setup(&["1"]);
    // an engine in no swarm: refused, nothing made
    let err = fleet
        .up(swarm_file("1", UpdatePolicy::default()), "c1".into(), MINUTE, &Progress::none())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is in no swarm"), "{err}");
    assert!(engine.secret_names().is_empty());

    engine.set_swarm();
    let outcome = fleet
        .up(swarm_file("1", UpdatePolicy::default()), "c1".into(), MINUTE, &Progress::none())
        .await
        .unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    assert!(engine.table().is_empty(), "no container made by drover itself");
    let db = engine.service_spec("f-db-1").unwrap();
    assert_eq!(db.container.labels[LABEL_SLOT], "f-db-1");
    assert_eq!(db.container.hostname, "f-db-1");
    assert_eq!(db.container.mounts, [Mount { volume: "f-db-1-data".into(), target: "/data".into() }]);
    // the master is dialled through docker_gwbridge's gateway
    assert_eq!(db.container.env["DROVER_MASTER"], "172.18.0.1:4506");
    // the keys travel as secrets, never as files in the spec
    assert!(db.container.files.is_empty());
    assert_eq!(db.secrets.len(), 1);
    assert_eq!(db.secrets[0].target, "/var/lib/drover/minion/pki/minion.key");
    assert_eq!(engine.secret_names().len(), 4);
    let ps = fleet.ps(None).await.unwrap();
    assert_eq!(ps.len(), 4);
    assert!(ps.iter().all(|s| s.node.as_deref() == Some("node-1") && s.problem.is_none()), "{ps:?}");

    // down: services, secrets and the network go; keys are revoked
    let out = fleet.down(false, &Progress::none()).await.unwrap();
    assert_eq!(out.notes[0], "removed 4 services", "{out:?}");
    assert!(engine.secret_names().is_empty());
    assert!(engine.service_spec("f-db-1").is_none());
    assert!(engine.network("f").await.unwrap().is_none());
    assert!(host.enrolled.lock().unwrap().is_empty());
}

/// The swarm fleet with a registry its role `reg` runs (port 5000 published, a volume).
fn registry_file(version: &str) -> FleetFile {
    let mut reg = role(version, 1);
    reg.ports = vec![render::fleet::scalar::port("5000:5000").unwrap()];
    reg.volumes = vec!["/var/lib/docker-registry".into()];
    let mut f = swarm_file(version, policy(1, Order::StartFirst, OnFailure::Rollback));
    f.roles.insert("reg".into(), reg);
    f.registry = Some(render::fleet::Registry { address: "127.0.0.1:5000".into(), role: Some("reg".into()) });
    f
}

#[tokio::test(start_paused = true)]
async fn on_swarm_with_a_registry_services_run_images_by_digest() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    engine.set_swarm();
    // the registry is not up yet for the first pushes: they wait for it
    engine.fail("push", 3);
    let outcome = fleet.up(registry_file("1"), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    let digest = |slot: &str| engine.service_spec(slot).unwrap().container.image;
    let v1 = digest("f-web-1");
    assert!(v1.starts_with("127.0.0.1:5000/app@sha256:"), "{v1}");
    assert_eq!(digest("f-db-1"), v1, "one image, one digest");
    // the registry's own service runs the local image, pinned to this engine's node
    let reg = engine.service_spec("f-reg-1").unwrap();
    assert_eq!(reg.container.image, "app:1");
    assert_eq!(reg.container.constraints, ["node.id==fake-node"]);
    // pushed once however many slots run it (the failed tries, then one that went through)
    let pushes: Vec<String> = changes(&engine).into_iter().filter(|c| c.starts_with("push")).collect();
    assert_eq!(pushes.len(), 4, "{pushes:?}");
    assert!(pushes.iter().all(|p| p == "push app:1 127.0.0.1:5000/app:1"), "{pushes:?}");

    // an upgrade pushes the new version and moves the services to its digest
    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let v2 = digest("f-web-3");
    assert!(v2.starts_with("127.0.0.1:5000/app@sha256:") && v2 != v1, "{v2}");
    let pushes: Vec<String> = changes(&engine).into_iter().filter(|c| c.starts_with("push")).collect();
    assert_eq!(pushes, ["push app:2 127.0.0.1:5000/app:2"]);
    // a later operation pushes again what it runs (the registry may have been emptied
    // since): once, however many slots it makes
    engine.clear_calls();
    let out = fleet.scale("web", 5, MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let pushes: Vec<String> = changes(&engine).into_iter().filter(|c| c.starts_with("push")).collect();
    assert_eq!(pushes, ["push app:2 127.0.0.1:5000/app:2"]);
    assert_eq!(digest("f-web-5"), v2);
    // the registry's own update keeps its pin
    let out =
        fleet.upgrade(&["reg".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let reg = engine.service_spec("f-reg-1").unwrap().container;
    assert_eq!(
        (reg.image.as_str(), reg.constraints.as_slice()),
        ("app:2", &["node.id==fake-node".to_string()][..])
    );
    // the master's engine on another node: the registry's next spec is pinned there alone
    engine.set_node_id("other-node");
    let out =
        fleet.upgrade(&["reg".into()], "1", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let reg = engine.service_spec("f-reg-1").unwrap().container;
    assert_eq!(reg.constraints, ["node.id==other-node"]);
    assert_eq!(reg.labels[LABEL_PLACEMENT], "node.id==other-node");
}

#[tokio::test(start_paused = true)]
async fn on_swarm_a_registry_that_never_answers_fails_the_slot_with_why() {
    let (fleet, engine, _) = setup(&["1"]);
    engine.set_swarm();
    let mut file = swarm_file("1", UpdatePolicy::default());
    file.registry = Some(render::fleet::Registry { address: "10.9.9.9:5000".into(), role: None });
    engine.fail("push", usize::MAX);
    let err = match fleet.up(file, "c1".into(), MINUTE, &Progress::none()).await {
        Err(e) => e.to_string(),
        Ok(outcome) => format!("{outcome:?}"),
    };
    assert!(
        err.contains("cannot push app:1 to the registry at 10.9.9.9:5000 (tried for 5s)")
            && err.contains("does not reach it at that address"),
        "{err}"
    );
    assert!(engine.service_spec("f-web-1").is_none(), "no service runs an image the nodes cannot get");
    // the four slots waited on one push, not one each: 5 s of tries, once a second
    let tries = engine.calls().iter().filter(|c| c.starts_with("push")).count();
    assert!((5..=7).contains(&tries), "{tries} pushes");
}

#[tokio::test(start_paused = true)]
async fn on_swarm_extra_networks_are_overlays_the_services_attach_to() {
    let (fleet, engine, _) = setup(&["1"]);
    engine.set_swarm();
    let file = FleetFile { engine: render::fleet::EngineKind::Swarm, ..segmented_file("1") };
    let outcome = fleet.up(file, "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    assert!(changes(&engine).contains(&"overlay f-data".to_string()), "{:?}", changes(&engine));
    let web = engine.service_spec("f-web-1").unwrap().container;
    assert_eq!((web.network.as_str(), web.networks.as_slice()), ("f", &["f-data".to_string()][..]));
    assert_eq!(web.aliases, ["f-web-1", "web", "www"]);
    // db on the overlay f-data only still dials the master through docker_gwbridge
    let db = engine.service_spec("f-db-1").unwrap().container;
    assert_eq!((db.network.as_str(), db.networks.len()), ("f-data", 0));
    assert_eq!(db.env["DROVER_MASTER"], "172.18.0.1:4506");
    fleet.down(false, &Progress::none()).await.unwrap();
    assert!(engine.network("f-data").await.unwrap().is_none());
    assert!(engine.network("f").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn on_swarm_a_swap_is_a_service_update_and_a_broken_version_goes_back() {
    let (fleet, engine, host) = setup(&["1", "2", "3"]);
    engine.set_swarm();
    host.break_version("3");
    let web = policy(1, Order::StartFirst, OnFailure::Rollback);
    fleet.up(swarm_file("1", web), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let updates: Vec<String> = changes(&engine).into_iter().filter(|c| c.starts_with("update")).collect();
    assert_eq!(updates, ["update f-web-1 app:2", "update f-web-2 app:2", "update f-web-3 app:2"]);
    let spec = engine.service_spec("f-web-2").unwrap();
    assert_eq!(spec.container.labels[LABEL_VERSION], "2");
    assert!(spec.update.start_first);
    assert_eq!(spec.update.monitor, Duration::from_secs(2));
    assert_eq!(spec.update.failure_action, FailureAction::Rollback);

    engine.clear_calls();
    let out =
        fleet.upgrade(&["web".into()], "3", PolicyOverride::default(), &Progress::none()).await.unwrap();
    let rollout = out.rollout.unwrap();
    assert_eq!(rollout.state, RolloutState::RolledBack);
    assert!(rollout.reason.unwrap().contains("f-web-1 failed to become ready at 3: apply failed"));
    // the failed slot goes back through its service's own rollback, not another update
    assert_eq!(swaps(&engine), ["update f-web-1 app:3", "rollback-service f-web-1"]);
    let web1 = engine.service_spec("f-web-1").unwrap().container;
    assert_eq!((web1.labels[LABEL_VERSION].as_str(), web1.image.as_str()), ("2", "app:2"));

    // undo of the upgrade to 2: Swarm's rollback where the previous spec is 1; web-1's is
    // the broken 3 it was rolled back from, so it gets an update to 1 instead
    engine.clear_calls();
    let out = fleet.undo(&Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        swaps(&engine),
        ["update f-web-1 app:1", "rollback-service f-web-2", "rollback-service f-web-3"]
    );
}

#[tokio::test(start_paused = true)]
async fn on_swarm_undo_is_each_services_own_rollback() {
    let (fleet, engine, host) = setup(&["1", "2"]);
    engine.set_swarm();
    let web = policy(1, Order::StartFirst, OnFailure::Rollback);
    fleet.up(swarm_file("1", web), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let generations: Vec<String> = (1..=3)
        .map(|n| {
            engine.service_spec(&format!("f-web-{n}")).unwrap().container.labels[LABEL_GENERATION].clone()
        })
        .collect();
    engine.clear_calls();
    let out = fleet.undo(&Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        swaps(&engine),
        ["rollback-service f-web-1", "rollback-service f-web-2", "rollback-service f-web-3"]
    );
    for n in 1..=3 {
        let c = engine.service_spec(&format!("f-web-{n}")).unwrap().container;
        assert_eq!(c.labels[LABEL_VERSION], "1");
        // the spec Swarm put back is the one version 1 had: an older generation than 2's,
        // which the master is told the fleet wants
        let (back, was): (u64, u64) =
            (c.labels[LABEL_GENERATION].parse().unwrap(), generations[n - 1].parse().unwrap());
        assert!(back < was, "{back} {was}");
        let wanted = host.wanted.lock().unwrap()[&format!("f-web-{n}")];
        assert_eq!(wanted.to_string(), c.labels[LABEL_GENERATION]);
    }
    // a slot whose service has no previous spec to go back to is updated instead
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    engine.forget_previous("f-web-2");
    engine.clear_calls();
    let out = fleet.undo(&Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    assert!(changes(&engine).contains(&"update f-web-2 app:1".to_string()), "{:?}", changes(&engine));
}

#[tokio::test(start_paused = true)]
async fn on_swarm_undo_keeps_the_settings_changed_with_the_version() {
    let (fleet, engine, _) = setup(&["1", "2"]);
    engine.set_swarm();
    let web = policy(1, Order::StartFirst, OnFailure::Rollback);
    fleet.up(swarm_file("1", web), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    // one `up` gives web version 2 and a new variable: Swarm's previous spec lacks it
    let mut file = swarm_file("2", web);
    file.roles.get_mut("web").unwrap().env.insert("MODE".into(), "fast".into());
    file.roles.get_mut("db").unwrap().version = "1".into();
    let out = fleet.up(file, "c2".into(), MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    engine.clear_calls();
    let out = fleet.undo(&Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    // undone by updates to 1 that keep MODE, not by Swarm's rollback, which would drop it
    assert_eq!(swaps(&engine), ["update f-web-1 app:1", "update f-web-2 app:1", "update f-web-3 app:1"]);
    let web1 = engine.service_spec("f-web-1").unwrap().container;
    assert_eq!((web1.labels[LABEL_VERSION].as_str(), web1.env["MODE"].as_str()), ("1", "fast"));
}

#[tokio::test(start_paused = true)]
async fn on_swarm_a_slot_is_ready_only_when_its_container_runs() {
    let (fleet, engine, host) = setup(&["1"]);
    engine.set_swarm();
    fleet.up(swarm_file("1", UpdatePolicy::default()), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    // the slot's task is not running (Swarm moved it: the new one is not started yet), while
    // the minion of its generation still answers, ready
    host.lingering.lock().unwrap().insert("f-web-2".into());
    engine.die_task("f-web-2", 0);
    let ps = fleet.ps(None).await.unwrap();
    let web2 = ps.iter().find(|s| s.slot == "f-web-2").unwrap();
    assert_eq!(web2.problem.as_deref(), Some("container exited (exit code 0)"), "{web2:?}");
    assert!(!web2.connected, "{web2:?}");
}

#[tokio::test(start_paused = true)]
async fn on_swarm_scale_makes_and_removes_services_with_their_secrets() {
    let (fleet, engine, host) = setup(&["1"]);
    engine.set_swarm();
    fleet.up(swarm_file("1", UpdatePolicy::default()), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    let out = fleet.scale("web", 5, MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    assert!(engine.service_spec("f-web-5").is_some());
    assert_eq!(engine.secret_names().len(), 6);
    let out = fleet.scale("web", 1, MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    assert!(engine.service_spec("f-web-2").is_none());
    assert!(engine.service_spec("f-web-1").is_some());
    // the removed slots' secrets are gone and their identities revoked
    let left = engine.secret_names();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|s| s.starts_with("f-db-1.") || s.starts_with("f-web-1.")), "{left:?}");
    assert!(!host.enrolled.lock().unwrap().contains("f-web-2"));
    // a dead task is Swarm's: the healer reports it and makes nothing
    engine.clear_calls();
    let token = tokio_util::sync::CancellationToken::new();
    let healer = fleet.spawn_healer(token.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.die_task("f-web-1", 137);
    tokio::time::sleep(Duration::from_secs(30)).await;
    token.cancel();
    healer.await.unwrap();
    assert!(changes(&engine).is_empty(), "{:?}", changes(&engine));
    assert!(host.events().iter().any(|t| t == "drover/fleet/f/slot/f-web-1/died"), "{:?}", host.events());
}

#[tokio::test(start_paused = true)]
async fn on_swarm_a_rollback_by_swarm_itself_ends_the_wait_and_the_slot_is_only_waited_for() {
    let (fleet, engine, host) = setup(&["1", "4"]);
    engine.set_swarm();
    host.stuck.lock().unwrap().insert("4".into());
    let web = UpdatePolicy { health_timeout: MINUTE, ..policy(1, Order::StopFirst, OnFailure::Rollback) };
    fleet.up(swarm_file("1", web), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    engine.clear_calls();
    // Swarm gives up on the new task (its health check never passes) before drover's
    // health_timeout, and rolls the service back itself
    let swarm = engine.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        swarm.swarm_rolls_back("f-web-1");
    });
    let out =
        fleet.upgrade(&["web".into()], "4", PolicyOverride::default(), &Progress::none()).await.unwrap();
    let rollout = out.rollout.unwrap();
    assert_eq!(rollout.state, RolloutState::RolledBack);
    let reason = rollout.reason.unwrap();
    assert!(
        reason.contains("f-web-1 failed to become ready at 4: Swarm put the service back at 1"),
        "{reason}"
    );
    assert!(reason.contains("rollback_completed"), "{reason}");
    // drover only waited for the slot Swarm put back: one update, Swarm's rollback, no other
    let updates: Vec<String> = changes(&engine).into_iter().filter(|c| c.starts_with("update")).collect();
    assert_eq!(updates, ["update f-web-1 app:4"]);
    assert_eq!(engine.service_spec("f-web-1").unwrap().container.labels[LABEL_VERSION], "1");
}

/// A swarm node of these tests: `id-<name>`, active, ready, 2 CPUs, 4G.
fn swarm_node(name: &str, zone: &str) -> crate::placement::NodeInfo {
    crate::placement::NodeInfo {
        id: format!("id-{name}"),
        hostname: name.into(),
        role: "worker".into(),
        availability: "active".into(),
        ready: true,
        labels: Labels::from([("zone".to_string(), zone.to_string())]),
        cpus: 2.0,
        memory: 4 << 30,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn on_swarm_placement_pins_slots_and_refuses_what_the_nodes_cannot_hold() {
    let (fleet, engine, _host) = setup(&["1", "2"]);
    engine.set_swarm();
    engine.set_nodes(vec![swarm_node("n1", "a"), swarm_node("n2", "a"), swarm_node("n3", "b")]);
    let with = |max: u32, reserve: Option<f64>| {
        let mut file = swarm_file("1", UpdatePolicy::default());
        let web = file.roles.get_mut("web").unwrap();
        web.placement.constraints = vec!["node.labels.zone==a".parse().unwrap()];
        web.placement.max_per_node = Some(max);
        web.resources.reservations.cpus = reserve;
        file
    };
    // 3 web slots, at most 1 per node on the 2 nodes of zone a: refused, nothing made
    let err = fleet.up(with(1, None), "c1".into(), MINUTE, &Progress::none()).await.unwrap_err();
    assert!(matches!(err, FleetError::Refused(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(
            "role web wants 3 slots, but at most 1 per node on the 2 node(s) that may run it (n1, n2)"
        ),
        "{text}"
    );
    assert!(engine.secret_names().is_empty() && engine.service_spec("f-db-1").is_none());
    assert!(fleet.record().fleet().is_none(), "nothing recorded");

    // 2 per node: each web service pinned to a node of zone a, never more than 2 on one
    let out = fleet.up(with(2, Some(0.5)), "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
    for n in 1..=3 {
        let spec = engine.service_spec(&format!("f-web-{n}")).unwrap().container;
        assert_eq!(spec.constraints[0], "node.labels.zone==a", "the role's own first");
        let pin = spec.constraints[1].strip_prefix("node.id==").expect("pinned").to_string();
        assert!(pin == "id-n1" || pin == "id-n2", "{pin}");
        assert_eq!(spec.labels[LABEL_PLACEMENT], spec.constraints[1]);
        assert_eq!(spec.reserve_cpus, Some(0.5));
        *per_node.entry(pin).or_default() += 1;
    }
    assert!(per_node.values().all(|&n| n <= 2), "{per_node:?}");
    assert!(engine.service_spec("f-db-1").unwrap().container.constraints.is_empty(), "db has no placement");
    let ps = fleet.ps(None).await.unwrap();
    assert!(ps.iter().filter(|s| s.role == "web").all(|s| s.node.as_deref() != Some("n3")), "{ps:?}");

    // an upgrade keeps each service's pin
    let before = engine.service_spec("f-web-2").unwrap().container.constraints;
    let out =
        fleet.upgrade(&["web".into()], "2", PolicyOverride::default(), &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let after = engine.service_spec("f-web-2").unwrap().container;
    assert_eq!(after.labels[LABEL_VERSION], "2");
    assert_eq!(after.constraints, before);

    // 5 web slots would need 3 nodes of zone a: refused before anything changes
    engine.clear_calls();
    let err = fleet.scale("web", 5, MINUTE, &Progress::none()).await.unwrap_err();
    assert!(err.to_string().contains("role web wants 5 slots, but at most 2 per node"), "{err}");
    assert!(changes(&engine).iter().all(|c| !c.starts_with("service")), "{:?}", changes(&engine));
    // 4 fit: the new one goes where there is room
    let out = fleet.scale("web", 4, MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let report = fleet.nodes().await.unwrap();
    assert_eq!(report.engine, "swarm");
    let by_name: BTreeMap<&str, &api::fleet::NodeStatus> =
        report.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    assert_eq!(by_name["n1"].slots.iter().filter(|s| s.starts_with("f-web-")).count(), 2);
    assert_eq!(by_name["n2"].slots.iter().filter(|s| s.starts_with("f-web-")).count(), 2);
    assert_eq!(by_name["n1"].reserved_cpus, 1.0);
    assert_eq!(by_name["n1"].free_cpus, 1.0);
    // losing n1 or n2 leaves two web slots with no node of zone a with room
    assert!(!report.headroom.ok, "{:?}", report.headroom);
    assert!(report.headroom.verdict.starts_with("no: without n"), "{:?}", report.headroom);
    assert_eq!(report.headroom.unplaced.len(), 2, "{:?}", report.headroom);
}

#[tokio::test(start_paused = true)]
async fn on_one_engine_placement_is_checked_against_the_engine() {
    let (fleet, engine, _host) = setup(&["1"]);
    let mut file = fleet_file("1", UpdatePolicy::default());
    file.roles.get_mut("web").unwrap().placement.constraints = vec!["node.labels.zone==a".parse().unwrap()];
    let err = fleet.up(file.clone(), "c1".into(), MINUTE, &Progress::none()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("on `engine: local` the one engine, fake, is the only node"), "{text}");
    assert!(text.contains("no active node satisfies its constraints (node.labels.zone==a)"), "{text}");
    assert!(engine.table().is_empty());
    // a constraint the engine satisfies, and reservations: a CPU share and a soft limit
    let web = file.roles.get_mut("web").unwrap();
    web.placement.constraints = vec!["node.hostname==fake".parse().unwrap()];
    web.resources.reservations = render::fleet::Reservations { cpus: Some(0.5), memory: Some(64 << 20) };
    let out = fleet.up(file, "c1".into(), MINUTE, &Progress::none()).await.unwrap();
    assert!(out.ok(), "{out:?}");
    let spec = engine.spec("f-web-1").unwrap();
    assert_eq!((spec.reserve_cpus, spec.reserve_memory), (Some(0.5), Some(64 << 20)));
    let report = fleet.nodes().await.unwrap();
    assert_eq!(report.engine, "local");
    assert_eq!(report.nodes.len(), 1);
    assert_eq!(report.nodes[0].containers, 4);
    assert_eq!(report.nodes[0].reserved_cpus, 1.5);
    assert_eq!(report.nodes[0].free_cpus, 0.5);
    assert_eq!((report.headroom.ok, report.headroom.verdict.as_str()), (false, "no: one node (fake)"));
}

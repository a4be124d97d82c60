//! The dashboard in headless Chromium, over a small fleet on the real Docker engine (the
//! fleet of tests/tests/fleet.rs): the page lists every minion and slot; a container killed
//! by hand shows as it happens (died, then healed) without a reload; a rollout shows its
//! progress; a command typed in the box returns each minion's result, shown as text (no
//! markup from a minion's output becomes an element). Then `GET /metrics` counted it all.
//!
//! Screenshots are kept in `target/test-artifacts/dashboard/` (the path is printed).

use std::time::Duration;

use serde_json::json;
use tests::browser::{Browser, artifacts};
use tests::docker::{docker, required};
use tests::fleet::{TestFleet, ok, ps};
use tests::wait_until;

const PAGE: Duration = Duration::from_secs(30);

/// A page-side check, as an expression: every id of `ids` is in the text of `selector`'s
/// elements.
fn all_listed(selector: &str, ids: &[String]) -> String {
    format!(
        "(() => {{ const seen = new Set([...document.querySelectorAll({})].map((e) => e.textContent.trim())); \
         return {}.every((id) => seen.has(id)); }})()",
        json!(selector),
        json!(ids)
    )
}

#[test]
fn the_dashboard_shows_the_fleet_live_and_runs_commands() {
    if !required() {
        return;
    }
    let Some(mut browser) = Browser::start() else { return };
    let fleet = TestFleet::new("dash", &["1", "2"]);
    let master = &fleet.master;
    ok(&master.drover(&["up", "--timeout", "120"]));
    let slots: Vec<String> = ps(master).iter().map(|s| s["slot"].as_str().unwrap().to_string()).collect();
    assert_eq!(slots.len(), 5, "{slots:?}");
    let shots = artifacts("dashboard");
    eprintln!("screenshots: {}", shots.display());

    let (url, token) = master.api_info();
    browser.open(&format!("{url}/#token={token}"));
    // every minion in the minions table, every slot a tile, each slot ready
    browser.wait_for(PAGE, "every minion listed", &all_listed("#minions td.id", &slots));
    browser.wait_for(PAGE, "every slot a tile", &all_listed("#fleet .slot-name", &slots));
    browser.wait_for(
        PAGE,
        "every slot ready",
        "document.querySelectorAll('#fleet .slot[data-state=ok]').length === 5",
    );
    // the token left the address bar
    assert_eq!(browser.eval("location.hash"), json!(""));
    browser.screenshot(&shots.join("1-fleet.png"));

    // a container killed by hand: the page shows it die and come back, with no reload
    browser.eval("window.notReloaded = true");
    let web2 = fleet.slot("web", 2);
    assert!(!docker(&["kill", &web2]).trim().is_empty(), "docker kill {web2}");
    let heal_row = |step: &str| {
        format!(
            "document.querySelector('#heals .heal[data-slot={}][data-step={step}]') !== null",
            json!(web2)
        )
    };
    browser.wait_for(PAGE, "the death in the heals panel", &heal_row("died"));
    browser.wait_for(
        PAGE,
        "the death in the live events",
        &format!(
            "[...document.querySelectorAll('#events .event')].some((e) => e.textContent.includes({}))",
            json!(format!("slot/{web2}/died"))
        ),
    );
    browser.screenshot(&shots.join("2-died.png"));
    browser.wait_for(Duration::from_secs(90), "the slot healed", &heal_row("healed"));
    browser.wait_for(
        PAGE,
        "the slot's tile ready again",
        &format!("document.querySelector('#fleet .slot[data-slot={}][data-state=ok]') !== null", json!(web2)),
    );
    assert_eq!(browser.eval("window.notReloaded"), json!(true), "the page reloaded");

    // a rollout of web to 2, one slot at a time: its progress while it runs, then done
    let mut upgrade = std::process::Command::new(tests::bin("drover"))
        .arg("--dir")
        .arg(master.state_dir())
        .args(["upgrade", "web", "--to", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    browser.wait_for(
        PAGE,
        "the rollout running, a slot done",
        "(() => { const r = document.querySelector('#rollouts .rollout[data-state=running]'); \
         return r !== null && r.querySelector('.seg.done') !== null; })()",
    );
    browser.screenshot(&shots.join("3-rollout.png"));
    browser.wait_for(
        Duration::from_secs(120),
        "the rollout done",
        "document.querySelector('#rollouts .rollout[data-state=done]') !== null",
    );
    assert!(upgrade.wait().unwrap().success(), "drover upgrade web --to 2 failed");

    // a command typed in the box: one result per minion, output shown as text
    browser.type_into("#run-target", &format!("{}-web-* or L@{}", fleet.scope.fleet, fleet.slot("kv", 1)));
    browser.type_into("#run-fun", "cmd.run");
    browser.type_into("#run-args", r#"'printf "<b id=injected>%s</b>" "$DROVER_IMAGE_VERSION"'"#);
    browser.press_enter();
    browser.wait_for(
        PAGE,
        "four results",
        "document.querySelectorAll('#run-results .result[data-success=true]').length === 4",
    );
    let outputs = browser.eval("[...document.querySelectorAll('#run-results .result')].map((r) => [r.dataset.minion, r.querySelector('pre').textContent])");
    let outputs = outputs.as_array().unwrap();
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    for o in outputs {
        let (minion, text) = (o[0].as_str().unwrap(), o[1].as_str().unwrap());
        let version = if minion.contains("-web-") { "2" } else { "1" };
        assert_eq!(text, format!("<b id=injected>{version}</b>"), "{minion}");
    }
    assert_eq!(
        browser.eval("document.getElementById('injected') === null"),
        json!(true),
        "markup was injected"
    );
    assert!(
        browser
            .eval("document.getElementById('run-summary').textContent")
            .as_str()
            .unwrap()
            .contains("4 of 4 returned")
    );
    browser.screenshot(&shots.join("4-command.png"));

    // what /metrics counted meanwhile
    let metrics = master.metrics();
    let get = |k: &str| metrics.get(k).copied().unwrap_or(0.0);
    assert_eq!(get("drover_minions_connected"), 5.0, "{metrics:?}");
    assert!(get("drover_fleet_container_deaths_total") >= 1.0, "{metrics:?}");
    assert!(get("drover_fleet_heals_total{result=\"healed\"}") >= 1.0, "{metrics:?}");
    assert_eq!(get("drover_rollouts_total{outcome=\"done\"}"), 1.0, "{metrics:?}");
    assert_eq!(get("drover_rollout_batches_total"), 3.0, "{metrics:?}");
    assert!(get("drover_returns_received_total{result=\"success\"}") >= 4.0, "{metrics:?}");

    ok(&master.drover(&["down", "--volumes"]));
    wait_until(Duration::from_secs(30), "the page to say no fleet is up", || {
        browser
            .eval("document.getElementById('fleet').textContent")
            .as_str()
            .unwrap_or("")
            .contains("No fleet is up")
    });
}

/// No Docker needed: two plain minions. The box splits what is typed as a shell would (the
/// job the master recorded says so), shows a failing minion as failed, and refuses an
/// unclosed quote without running anything.
#[test]
fn the_command_box_splits_words_as_a_shell_does_and_shows_failures() {
    let Some(mut browser) = Browser::start() else { return };
    let master = tests::Master::start(&["--auto-accept"]);
    let _minions = tests::minions(&master, "box", 2, &[]);
    master.wait_for_minions(2);
    let (url, token) = master.api_info();
    browser.open(&format!("{url}/#token={token}"));
    let ids = ["box-01".to_string(), "box-02".to_string()];
    browser.wait_for(PAGE, "both minions listed", &all_listed("#minions td.id", &ids));

    // test.echo takes one argument: given three, each minion fails, saying so
    browser.type_into("#run-target", "box-*");
    browser.type_into("#run-fun", "test.echo");
    browser.type_into("#run-args", r#"'a  b' "c \"d\" \$x" e\ f n=5 t=true q='x y'"#);
    browser.press_enter();
    browser.wait_for(
        PAGE,
        "two failed results",
        "document.querySelectorAll('#run-results .result[data-success=false]').length === 2",
    );
    let summary = browser.eval("document.getElementById('run-summary').textContent");
    let summary = summary.as_str().unwrap();
    assert!(summary.contains("2 of 2 returned") && summary.contains("2 failed"), "{summary}");
    let jid = summary.rsplit("job ").next().unwrap().trim();
    let job = master.api(&format!("jobs/{jid}"));
    assert_eq!(job["args"], json!(["a  b", "c \"d\" $x", "e f"]), "{job}");
    assert_eq!(job["kwargs"], json!({"n": 5, "t": true, "q": "x y"}), "{job}");
    browser.screenshot(&artifacts("dashboard").join("5-failures.png"));

    // an unclosed quote: said in the box, nothing run
    let jobs = master.api("jobs").as_array().unwrap().len();
    browser.type_into("#run-args", "'oops");
    browser.press_enter();
    browser.wait_for(
        PAGE,
        "the quote error",
        "document.getElementById('run-summary').textContent.includes('is not closed')",
    );
    assert_eq!(master.api("jobs").as_array().unwrap().len(), jobs, "a job ran");
    // with no fleet (or no Docker engine) the fleet panel says so rather than failing
    browser.wait_for(
        PAGE,
        "the fleet panel's word",
        "/No fleet is up|not available/.test(document.getElementById('fleet').textContent)",
    );
}

//! `service.running` and `service.dead`: a systemd unit active or not (and, with
//! `enable`, enabled at boot or not), through the `service.*` functions' [`Systemd`].
//! `service.running` restarts a running unit when a state it watches changed, as Salt's.
//! Refused in a fleet container, and where systemd is not the init system.

use render::Service;
use serde_json::{Map, Value, json};

use super::Outcome;
use crate::functions::host::{Host, Runner, refuse_state_in_fleet};
use crate::functions::service::Systemd;

/// `running`: `service.running`, else `service.dead`.
pub(crate) async fn apply<R: Runner>(
    host: &Host<R>,
    s: &Service,
    running: bool,
    watched_changed: bool,
    grains: &Map<String, Value>,
    test: bool,
) -> Outcome {
    let function = if running { "service.running" } else { "service.dead" };
    if let Some(message) = refuse_state_in_fleet(grains, function) {
        return Outcome::fail(message);
    }
    match converge(host, s, running, watched_changed, test).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::fail(e),
    }
}

async fn converge<R: Runner>(
    host: &Host<R>,
    s: &Service,
    running: bool,
    watched_changed: bool,
    test: bool,
) -> Result<Outcome, String> {
    let systemd = Systemd::of(host)?;
    let name = &s.name;
    let mut todo: Vec<(&str, String)> = Vec::new();
    let active = systemd.is_active(name).await?;
    match (running, active) {
        (true, false) => todo.push(("start", format!("service {name} started"))),
        (true, true) if watched_changed => {
            todo.push(("restart", format!("service {name} restarted: a watched state changed")))
        }
        (false, true) => todo.push(("stop", format!("service {name} stopped"))),
        _ => {}
    }
    if let Some(enable) = s.enable
        && systemd.is_enabled(name).await? != enable
    {
        let (verb, done) = if enable { ("enable", "enabled") } else { ("disable", "disabled") };
        todo.push((verb, format!("service {name} {done}")));
    }
    if todo.is_empty() {
        let state = if running { "running" } else { "dead" };
        return Ok(Outcome::ok(format!("service {name} is already {state}")));
    }
    let mut changes = Map::new();
    for (verb, _) in &todo {
        if !test {
            systemd.act(verb, name).await?;
        }
        changes.insert((*verb).to_string(), json!(true));
    }
    let comment: Vec<&str> = todo.iter().map(|(_, c)| c.as_str()).collect();
    let comment = if test { format!("would be: {}", comment.join("; ")) } else { comment.join("; ") };
    Ok(Outcome::changed(test, comment, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::host::fake;
    use crate::functions::service::tests::with_systemd;

    fn service(name: &str, enable: Option<bool>) -> Service {
        Service { name: name.into(), enable }
    }

    #[tokio::test]
    async fn running_starts_enables_and_restarts_on_watch() {
        let (dir, mut host) = fake::host(|_| {});
        with_systemd(dir.path());
        // every systemctl query exits 3: inactive, not enabled
        host.runner.retcode = 3;
        let o = apply(&host, &service("nginx", Some(true)), true, false, &Map::new(), true).await;
        assert_eq!(o.result, None);
        assert_eq!(o.comment, "would be: service nginx started; service nginx enabled");
        assert_eq!(
            host.runner.argvs(),
            ["systemctl is-active --quiet nginx", "systemctl is-enabled --quiet nginx"]
        );

        // active and enabled: nothing to do, unless a watched state changed
        let (dir, host) = fake::host(|_| {});
        with_systemd(dir.path());
        let o = apply(&host, &service("nginx", Some(true)), true, false, &Map::new(), false).await;
        assert_eq!(
            (o.result, o.changed, o.comment.as_str()),
            (Some(true), false, "service nginx is already running")
        );
        let o = apply(&host, &service("nginx", None), true, true, &Map::new(), false).await;
        assert_eq!((o.result, o.changed), (Some(true), true));
        assert_eq!(Value::Object(o.changes), json!({"restart": true}));
        assert_eq!(host.runner.argvs().last().unwrap(), "systemctl restart nginx");
    }

    #[tokio::test]
    async fn dead_stops_and_disables() {
        let (dir, host) = fake::host(|_| {});
        with_systemd(dir.path());
        let o = apply(&host, &service("apache2", Some(false)), false, false, &Map::new(), false).await;
        assert_eq!(o.comment, "service apache2 stopped; service apache2 disabled");
        assert_eq!(
            host.runner.argvs(),
            [
                "systemctl is-active --quiet apache2",
                "systemctl is-enabled --quiet apache2",
                "systemctl stop apache2",
                "systemctl disable apache2",
            ]
        );
    }

    #[tokio::test]
    async fn no_systemd_or_a_fleet_container() {
        let (_dir, host) = fake::host(|_| {});
        let o = apply(&host, &service("nginx", None), true, false, &Map::new(), false).await;
        assert_eq!(o.result, Some(false));
        assert!(o.comment.starts_with("no systemd here"), "{}", o.comment);
        let fleet = json!({"fleet": "coins"}).as_object().unwrap().clone();
        let o = apply(&host, &service("nginx", None), false, false, &fleet, false).await;
        assert!(o.comment.starts_with("service.dead is not available in a fleet container"), "{}", o.comment);
        assert!(host.runner.argvs().is_empty());
    }
}

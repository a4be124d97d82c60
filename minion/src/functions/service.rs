//! `service.status`, `service.start`, `service.stop`, `service.restart`: systemd units, as
//! Salt's, through `systemctl`. Only where systemd is the init system (`/run/systemd/system`
//! is a directory, as `sd_booted(3)` checks); elsewhere they fail saying so. Starting,
//! stopping and restarting are refused in a fleet container (its daemons are the
//! `daemon.*` states' and functions'). The `service.running` and `service.dead` states use
//! [`Systemd`] too.

use serde_json::Value;

use super::host::{self, Host, Runner};
use super::{BoxFuture, Call, Outcome, arity, known_kwargs, scalar_string};

/// A unit name `systemctl` takes as one (never an option).
pub(crate) fn check_unit(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c));
    if ok { Ok(()) } else { Err(format!("'{name}' is not a systemd unit name")) }
}

/// The systemd of a host, checked to be there.
pub(crate) struct Systemd<'a, R> {
    host: &'a Host<R>,
}

impl<'a, R: Runner> Systemd<'a, R> {
    /// The host's systemd, or why there is none.
    pub fn of(host: &'a Host<R>) -> Result<Self, String> {
        let marker = host.path("/run/systemd/system");
        if marker.is_dir() {
            Ok(Systemd { host })
        } else {
            Err(format!(
                "no systemd here ({} is not a directory): service functions and states drive systemd \
                 units; run the program as a daemon.running state instead",
                marker.display()
            ))
        }
    }

    /// `systemctl is-active --quiet NAME` exits 0.
    pub async fn is_active(&self, unit: &str) -> Result<bool, String> {
        self.query("is-active", unit).await
    }

    /// `systemctl is-enabled --quiet NAME` exits 0.
    pub async fn is_enabled(&self, unit: &str) -> Result<bool, String> {
        self.query("is-enabled", unit).await
    }

    async fn query(&self, what: &str, unit: &str) -> Result<bool, String> {
        check_unit(unit)?;
        Ok(self.host.runner.run(&["systemctl", what, "--quiet", unit], &[]).await?.retcode == 0)
    }

    /// `systemctl VERB NAME` (start, stop, restart, enable, disable), which must succeed.
    pub async fn act(&self, verb: &str, unit: &str) -> Result<(), String> {
        check_unit(unit)?;
        self.host.check(&["systemctl", verb, unit], &[]).await.map(drop)
    }
}

pub fn status(call: Call) -> BoxFuture {
    Box::pin(async move { status_on(&Host::real(), &call).await })
}

/// `service.start`, `service.stop`, `service.restart`.
pub fn act(call: Call) -> BoxFuture {
    Box::pin(async move { act_on(&Host::real(), &call).await })
}

/// The unit of a call: its one argument.
fn unit(call: &Call) -> Result<String, Outcome> {
    let usage = format!("{} <unit>", call.fun);
    arity(call, 1..=1, &usage)?;
    known_kwargs(call, &[], &usage)?;
    let name = scalar_string(&call.args[0])
        .ok_or_else(|| Outcome::fail(format!("{} expects a unit name, got {}", call.fun, call.args[0])))?;
    check_unit(&name).map_err(|e| Outcome::fail(format!("{}: {e}; usage: {usage}", call.fun)))?;
    Ok(name)
}

/// `service.status <unit>` → whether it is active.
async fn status_on<R: Runner>(host: &Host<R>, call: &Call) -> Outcome {
    let name = match unit(call) {
        Ok(name) => name,
        Err(o) => return o,
    };
    let active = match Systemd::of(host) {
        Ok(systemd) => systemd.is_active(&name).await,
        Err(e) => Err(e),
    };
    active.map_or_else(|e| Outcome::fail(format!("{}: {e}", call.fun)), |a| Outcome::ok(Value::Bool(a)))
}

/// `service.start|stop|restart <unit>` → true once `systemctl` did it.
async fn act_on<R: Runner>(host: &Host<R>, call: &Call) -> Outcome {
    let name = match unit(call) {
        Ok(name) => name,
        Err(o) => return o,
    };
    if let Some(o) = host::refuse_call_in_fleet(call) {
        return o;
    }
    let verb = call.fun.trim_start_matches("service.");
    let done = match Systemd::of(host) {
        Ok(systemd) => systemd.act(verb, &name).await,
        Err(e) => Err(e),
    };
    done.map_or_else(|e| Outcome::fail(format!("{}: {e}", call.fun)), |()| Outcome::ok(true))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::super::host::fake;
    use super::super::tests::call_of;
    use super::*;
    use serde_json::json;

    pub fn with_systemd(root: &Path) {
        std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    }

    #[tokio::test]
    async fn systemctl_argv() {
        let (dir, mut host) = fake::host(|_| {});
        with_systemd(dir.path());
        let o = status_on(&host, &call_of("service.status", vec![json!("nginx")], &[])).await;
        assert_eq!((o.success, o.ret), (true, json!(true)));
        for fun in ["service.start", "service.stop", "service.restart"] {
            let o = act_on(&host, &call_of(fun, vec![json!("nginx.service")], &[])).await;
            assert_eq!((o.success, o.ret), (true, json!(true)), "{fun}");
        }
        assert_eq!(
            host.runner.argvs(),
            [
                "systemctl is-active --quiet nginx",
                "systemctl start nginx.service",
                "systemctl stop nginx.service",
                "systemctl restart nginx.service",
            ]
        );
        host.runner.retcode = 3;
        host.runner.stdout = "inactive".into();
        let o = status_on(&host, &call_of("service.status", vec![json!("nginx")], &[])).await;
        assert_eq!((o.success, o.ret), (true, json!(false)));
        let o = act_on(&host, &call_of("service.start", vec![json!("nginx")], &[])).await;
        assert_eq!(o.ret, json!("service.start: `systemctl start nginx` exited 3: inactive"));
    }

    #[tokio::test]
    async fn no_systemd_fleet_containers_and_bad_names() {
        let (_dir, host) = fake::host(|_| {});
        let o = status_on(&host, &call_of("service.status", vec![json!("nginx")], &[])).await;
        assert!(o.ret.as_str().unwrap().contains("no systemd here"), "{}", o.ret);

        let (dir, host) = fake::host(|_| {});
        with_systemd(dir.path());
        let mut call = call_of("service.restart", vec![json!("nginx")], &[]);
        std::sync::Arc::make_mut(&mut call.grains).insert("image".into(), json!("web"));
        let o = act_on(&host, &call).await;
        assert!(o.ret.as_str().unwrap().contains("change the image instead"), "{}", o.ret);
        let o = act_on(&host, &call_of("service.stop", vec![json!("--all")], &[])).await;
        assert!(o.ret.as_str().unwrap().contains("is not a systemd unit name"), "{}", o.ret);
        assert!(host.runner.argvs().is_empty());
    }
}

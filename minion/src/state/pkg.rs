//! `pkg.installed` and `pkg.removed`: Debian packages, through the `pkg.*` functions'
//! [`pkg::install`] and [`pkg::remove`] on a [`Host`]. Refused in a fleet container,
//! whose packages come from its image.

use render::{PkgInstalled, PkgRemoved};
use serde_json::{Map, Value};

use super::Outcome;
use crate::functions::host::{Host, Runner, refuse_state_in_fleet};
use crate::functions::pkg;

pub(crate) async fn installed<R: Runner>(
    host: &Host<R>,
    p: &PkgInstalled,
    grains: &Map<String, Value>,
    test: bool,
) -> Outcome {
    if let Some(message) = refuse_state_in_fleet(grains, "pkg.installed") {
        return Outcome::fail(message);
    }
    let have = match pkg::installed(host) {
        Ok(have) => have,
        Err(e) => return Outcome::fail(e),
    };
    let wanted: Vec<(String, Option<String>)> =
        p.pkgs.iter().map(|name| (name.clone(), p.version.clone())).collect();
    let missing: Vec<&(String, Option<String>)> = wanted
        .iter()
        .filter(|(name, version)| {
            let name = name.split(':').next().unwrap_or(name);
            match (have.get(name), version) {
                (None, _) => true,
                (Some(have), Some(want)) => have != want,
                (Some(_), None) => false,
            }
        })
        .collect();
    let shown = |pkgs: &[&(String, Option<String>)]| {
        pkgs.iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}={v}"),
                None => n.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if missing.is_empty() {
        return Outcome::ok(format!(
            "all packages are already installed: {}",
            shown(&wanted.iter().collect::<Vec<_>>())
        ));
    }
    if test {
        return Outcome::changed(true, format!("would install: {}", shown(&missing)), Map::new());
    }
    let missing: Vec<(String, Option<String>)> = missing.into_iter().cloned().collect();
    match pkg::install(host, &missing, p.refresh).await {
        Ok(changes) => {
            let comment = format!("installed: {}", shown(&missing.iter().collect::<Vec<_>>()));
            Outcome::changed(false, comment, changes)
        }
        Err(e) => Outcome::fail(e),
    }
}

pub(crate) async fn removed<R: Runner>(
    host: &Host<R>,
    p: &PkgRemoved,
    grains: &Map<String, Value>,
    test: bool,
) -> Outcome {
    if let Some(message) = refuse_state_in_fleet(grains, "pkg.removed") {
        return Outcome::fail(message);
    }
    let have = match pkg::installed(host) {
        Ok(have) => have,
        Err(e) => return Outcome::fail(e),
    };
    let present: Vec<String> = p.pkgs.iter().filter(|n| have.contains_key(*n)).cloned().collect();
    if present.is_empty() {
        return Outcome::ok(format!("none of the packages is installed: {}", p.pkgs.join(", ")));
    }
    if test {
        return Outcome::changed(true, format!("would remove: {}", present.join(", ")), Map::new());
    }
    match pkg::remove(host, &present).await {
        Ok(changes) => Outcome::changed(false, format!("removed: {}", present.join(", ")), changes),
        Err(e) => Outcome::fail(e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::functions::host::fake;
    use crate::functions::pkg::tests::write_status;

    fn installed_state(pkgs: &[&str], version: Option<&str>) -> PkgInstalled {
        PkgInstalled {
            name: pkgs[0].into(),
            pkgs: pkgs.iter().map(|p| p.to_string()).collect(),
            version: version.map(String::from),
            refresh: false,
        }
    }

    #[tokio::test]
    async fn installed_installs_only_what_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_path_buf();
        write_status(&r, &[("curl", "7.88.1-10")]);
        let host = Host {
            root: r.clone(),
            runner: fake::Recorder::new(move |_| {
                write_status(&r, &[("curl", "7.88.1-10"), ("jq", "1.6-2.1")])
            }),
        };
        let grains = Map::new();
        let state = installed_state(&["curl", "jq"], None);

        let o = installed(&host, &state, &grains, true).await;
        assert_eq!((o.result, o.comment.as_str()), (None, "would install: jq"));
        assert!(host.runner.argvs().is_empty());

        let o = installed(&host, &state, &grains, false).await;
        assert_eq!((o.result, o.changed), (Some(true), true));
        assert_eq!(Value::Object(o.changes), json!({"jq": {"old": "", "new": "1.6-2.1"}}));
        let argvs = host.runner.argvs();
        assert_eq!(argvs.len(), 1);
        assert!(argvs[0].starts_with("apt-get -q -y ") && argvs[0].ends_with(" install jq"), "{argvs:?}");

        let o = installed(&host, &state, &grains, false).await;
        assert_eq!((o.result, o.changed), (Some(true), false));
        assert_eq!(o.comment, "all packages are already installed: curl, jq");
        assert_eq!(host.runner.argvs().len(), 1);

        // another version than the one installed
        let o = installed(&host, &installed_state(&["jq"], Some("1.7-1")), &grains, true).await;
        assert_eq!(o.comment, "would install: jq=1.7-1");
    }

    #[tokio::test]
    async fn removed_and_fleet_containers() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_path_buf();
        write_status(&r, &[("telnet", "0.17")]);
        let host = Host { root: r.clone(), runner: fake::Recorder::new(move |_| write_status(&r, &[])) };
        let state = PkgRemoved { name: "telnet".into(), pkgs: vec!["telnet".into(), "rsh".into()] };
        let o = removed(&host, &state, &Map::new(), false).await;
        assert_eq!((o.result, o.comment.as_str()), (Some(true), "removed: telnet"));
        assert!(host.runner.argvs()[0].ends_with(" remove telnet"));
        let o = removed(&host, &state, &Map::new(), false).await;
        assert_eq!((o.result, o.changed), (Some(true), false));

        let fleet = json!({"fleet": "coins", "image": "coins"}).as_object().unwrap().clone();
        let o = installed(&host, &installed_state(&["jq"], None), &fleet, false).await;
        assert_eq!(o.result, Some(false));
        assert!(
            o.comment.starts_with("pkg.installed is not available in a fleet container"),
            "{}",
            o.comment
        );
        assert_eq!(host.runner.argvs().len(), 1);
    }
}

//! `pkg.version`, `pkg.list_pkgs`, `pkg.install`, `pkg.remove` on Debian and Ubuntu hosts,
//! as Salt's: dpkg's status database says what is installed, `apt-get` changes it (with
//! `DEBIAN_FRONTEND=noninteractive`, keeping changed configuration files). The
//! `pkg.installed` and `pkg.removed` states use [`install`] and [`remove`] too.
//!
//! Reading works anywhere; installing and removing are refused in a fleet container, whose
//! packages come from its image ([`host::refuse_in_fleet`]).

use std::collections::BTreeMap;
use std::io;

use serde_json::{Map, Value, json};

use super::host::{self, Host, Runner};
use super::{BoxFuture, Call, Outcome, arity, boolean, known_kwargs, scalar_string};

/// dpkg's database of packages and their states.
pub(crate) const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// apt-get's options for a change nobody answers questions for: yes to all, quiet, and
/// on a changed configuration file, the default action, else keep the file as it is.
const APT_GET: [&str; 7] =
    ["apt-get", "-q", "-y", "-o", "DPkg::Options::=--force-confdef", "-o", "DPkg::Options::=--force-confold"];
const NONINTERACTIVE: [(&str, &str); 1] = [("DEBIAN_FRONTEND", "noninteractive")];

/// The installed packages and their versions, from a dpkg status file: each paragraph
/// with `Status: install ok installed` (a removed package whose configuration files are
/// left is not installed).
pub(crate) fn parse_status(text: &str) -> BTreeMap<String, String> {
    let mut installed = BTreeMap::new();
    for paragraph in text.split("\n\n") {
        let (mut name, mut status, mut version) = (None, None, None);
        for line in paragraph.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                status = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            }
        }
        let is_installed = status.is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"));
        if let (Some(name), Some(version), true) = (name, version, is_installed) {
            installed.insert(name.to_string(), version.to_string());
        }
    }
    installed
}

/// The installed packages of `host`: name → version.
pub(crate) fn installed<R: Runner>(host: &Host<R>) -> Result<BTreeMap<String, String>, String> {
    let path = host.path(DPKG_STATUS);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_status(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "{} does not exist: pkg functions and states manage the packages of Debian and Ubuntu hosts (dpkg and apt-get)",
            path.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A package name apt-get takes as one: Debian's rule (lowercase letters, digits, `+ - .`,
/// starting with a letter or digit), with `:arch`; never an option.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let (pkg, arch) = name.split_once(':').unwrap_or((name, "x"));
    let ok = pkg.len() >= 2
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && !arch.is_empty()
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a Debian package name (lowercase letters, digits, + - ., starting with a letter or digit)"
        ))
    }
}

/// A Debian version: `[epoch:]upstream[-revision]`.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    let ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version.chars().all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
    if ok { Ok(()) } else { Err(format!("'{version}' is not a Debian package version")) }
}

/// Salt's changes of a package operation: `{name: {old, new}}` for each package whose
/// version changed (`""` for not installed).
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Map<String, Value> {
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| {
            let version = |m: &BTreeMap<String, String>| m.get(n).cloned().unwrap_or_default();
            (n.clone(), json!({"old": version(before), "new": version(after)}))
        })
        .collect()
}

/// Installs `pkgs` (each with the exact version wanted, if one) with apt-get, after
/// `apt-get update` when `refresh`: the changes, or why it failed. Checks afterwards that
/// each is installed (at its version).
pub(crate) async fn install<R: Runner>(
    host: &Host<R>,
    pkgs: &[(String, Option<String>)],
    refresh: bool,
) -> Result<Map<String, Value>, String> {
    for (name, version) in pkgs {
        check_name(name)?;
        version.as_deref().map(check_version).transpose()?;
    }
    let before = installed(host)?;
    if refresh {
        host.check(&["apt-get", "-q", "update"], &NONINTERACTIVE).await?;
    }
    let wanted: Vec<String> = pkgs
        .iter()
        .map(|(name, version)| match version {
            Some(v) => format!("{name}={v}"),
            None => name.clone(),
        })
        .collect();
    let mut argv: Vec<&str> = APT_GET.to_vec();
    argv.push("install");
    argv.extend(wanted.iter().map(String::as_str));
    host.check(&argv, &NONINTERACTIVE).await?;
    let after = installed(host)?;
    for (name, version) in pkgs {
        let name = name.split(':').next().unwrap_or(name);
        match (after.get(name), version) {
            (None, _) => return Err(format!("apt-get install exited 0, but {name} is not installed")),
            (Some(have), Some(want)) if have != want => {
                return Err(format!("apt-get install exited 0, but {name} is at {have}, not {want}"));
            }
            _ => {}
        }
    }
    Ok(changes(&before, &after))
}

/// Removes `pkgs` with apt-get (their configuration files stay, as `apt-get remove`
/// leaves them): the changes, or why it failed.
pub(crate) async fn remove<R: Runner>(host: &Host<R>, pkgs: &[String]) -> Result<Map<String, Value>, String> {
    for name in pkgs {
        check_name(name)?;
    }
    let before = installed(host)?;
    let present: Vec<&str> = pkgs.iter().map(String::as_str).filter(|p| before.contains_key(*p)).collect();
    if present.is_empty() {
        return Ok(Map::new());
    }
    let mut argv: Vec<&str> = APT_GET.to_vec();
    argv.push("remove");
    argv.extend(present);
    host.check(&argv, &NONINTERACTIVE).await?;
    let after = installed(host)?;
    if let Some(left) = pkgs.iter().find(|p| after.contains_key(*p)) {
        return Err(format!("apt-get remove exited 0, but {left} is still installed"));
    }
    Ok(changes(&before, &after))
}

const VERSION_USAGE: &str = "pkg.version <name>...";
const LIST_USAGE: &str = "pkg.list_pkgs";
const INSTALL_USAGE: &str = "pkg.install <name>... [version=V] [refresh=true] | pkg.install pkgs='[a, b]'";
const REMOVE_USAGE: &str = "pkg.remove <name>... | pkg.remove pkgs='[a, b]'";

pub fn version(call: Call) -> BoxFuture {
    Box::pin(async move { version_on(&Host::real(), &call) })
}

pub fn list_pkgs(call: Call) -> BoxFuture {
    Box::pin(async move { list_pkgs_on(&Host::real(), &call) })
}

pub fn install_fn(call: Call) -> BoxFuture {
    Box::pin(async move { install_on(&Host::real(), &call).await })
}

pub fn remove_fn(call: Call) -> BoxFuture {
    Box::pin(async move { remove_on(&Host::real(), &call).await })
}

/// `pkg.version <name>...` → the installed version (`""` when not installed); a map of
/// them with several names.
fn version_on<R: Runner>(host: &Host<R>, call: &Call) -> Outcome {
    if let Err(o) =
        arity(call, 1..=usize::MAX, VERSION_USAGE).and_then(|()| known_kwargs(call, &[], VERSION_USAGE))
    {
        return o;
    }
    let names = match names(call, &call.args, VERSION_USAGE) {
        Ok(names) => names,
        Err(o) => return o,
    };
    let installed = match installed(host) {
        Ok(installed) => installed,
        Err(e) => return Outcome::fail(format!("{}: {e}", call.fun)),
    };
    let version = |n: &String| Value::String(installed.get(n).cloned().unwrap_or_default());
    match names.as_slice() {
        [one] => Outcome::ok(version(one)),
        several => Outcome::ok(Value::Object(several.iter().map(|n| (n.clone(), version(n))).collect())),
    }
}

/// `pkg.list_pkgs` → `{name: version}` of every installed package.
fn list_pkgs_on<R: Runner>(host: &Host<R>, call: &Call) -> Outcome {
    if let Err(o) = arity(call, 0..=0, LIST_USAGE).and_then(|()| known_kwargs(call, &[], LIST_USAGE)) {
        return o;
    }
    match installed(host) {
        Ok(installed) => {
            Outcome::ok(Value::Object(installed.into_iter().map(|(k, v)| (k, json!(v))).collect()))
        }
        Err(e) => Outcome::fail(format!("{}: {e}", call.fun)),
    }
}

async fn install_on<R: Runner>(host: &Host<R>, call: &Call) -> Outcome {
    let usage = INSTALL_USAGE;
    if let Err(o) = known_kwargs(call, &["pkgs", "version", "refresh"], usage) {
        return o;
    }
    if let Some(o) = host::refuse_call_in_fleet(call) {
        return o;
    }
    let names = match packages(call, usage) {
        Ok(names) => names,
        Err(o) => return o,
    };
    let version = match call.kwargs.get("version") {
        None => None,
        Some(_) if names.len() > 1 => {
            return Outcome::fail(format!("{}: version= is for one package; usage: {usage}", call.fun));
        }
        Some(v) => match scalar_string(v) {
            Some(v) => Some(v),
            None => return Outcome::fail(format!("{}: version= expects a version, got {v}", call.fun)),
        },
    };
    let refresh = match call.kwargs.get("refresh").map(boolean) {
        None => false,
        Some(Some(r)) => r,
        Some(None) => {
            return Outcome::fail(format!("{}: refresh= takes true or false; usage: {usage}", call.fun));
        }
    };
    let pkgs: Vec<(String, Option<String>)> = names.into_iter().map(|n| (n, version.clone())).collect();
    match install(host, &pkgs, refresh).await {
        Ok(changes) => Outcome::ok(Value::Object(changes)),
        Err(e) => Outcome::fail(format!("{}: {e}", call.fun)),
    }
}

async fn remove_on<R: Runner>(host: &Host<R>, call: &Call) -> Outcome {
    if let Err(o) = known_kwargs(call, &["pkgs"], REMOVE_USAGE) {
        return o;
    }
    if let Some(o) = host::refuse_call_in_fleet(call) {
        return o;
    }
    let names = match packages(call, REMOVE_USAGE) {
        Ok(names) => names,
        Err(o) => return o,
    };
    match remove(host, &names).await {
        Ok(changes) => Outcome::ok(Value::Object(changes)),
        Err(e) => Outcome::fail(format!("{}: {e}", call.fun)),
    }
}

/// The packages of a call: positional names, or `pkgs=` (a list), not both.
fn packages(call: &Call, usage: &str) -> Result<Vec<String>, Outcome> {
    match call.kwargs.get("pkgs") {
        Some(_) if !call.args.is_empty() => Err(Outcome::fail(format!(
            "{}: give packages as arguments or pkgs=, not both; usage: {usage}",
            call.fun
        ))),
        Some(Value::Array(list)) => names(call, list, usage),
        Some(v) => Err(Outcome::fail(format!("{}: pkgs= expects a list, got {v}; usage: {usage}", call.fun))),
        None => {
            arity(call, 1..=usize::MAX, usage)?;
            names(call, &call.args, usage)
        }
    }
}

fn names(call: &Call, values: &[Value], usage: &str) -> Result<Vec<String>, Outcome> {
    values
        .iter()
        .map(|v| {
            let name = scalar_string(v)
                .ok_or_else(|| Outcome::fail(format!("{}: expected package names, got {v}", call.fun)))?;
            check_name(&name).map_err(|e| Outcome::fail(format!("{}: {e}; usage: {usage}", call.fun)))?;
            Ok(name)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::super::host::fake;
    use super::super::tests::call_of;
    use super::*;

    /// A dpkg status file with these `(name, version)` installed, and one removed package
    /// whose configuration files are left.
    pub fn status(installed: &[(&str, &str)]) -> String {
        let mut text = String::from(
            "Package: oldie\nStatus: deinstall ok config-files\nPriority: optional\nVersion: 0.9\n\n",
        );
        for (name, version) in installed {
            text.push_str(&format!(
                "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\nDescription: the {name} package\n continued\n\n"
            ));
        }
        text
    }

    pub fn write_status(root: &Path, installed: &[(&str, &str)]) {
        let path = root.join("var/lib/dpkg/status");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, status(installed)).unwrap();
    }

    #[test]
    fn status_database() {
        let got = parse_status(&status(&[("redis-server", "5:7.0.15-1"), ("curl", "7.88.1-10")]));
        let want: BTreeMap<String, String> =
            [("curl", "7.88.1-10"), ("redis-server", "5:7.0.15-1")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(got, want);
    }

    #[test]
    fn names_and_versions_that_apt_get_could_misread_are_refused() {
        for bad in ["-o", "--purge", "a", "Curl", "curl;rm", "curl:", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for good in ["curl", "libc6:amd64", "g++", "python3.11"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        assert!(check_version("-1").is_err());
        assert!(check_version("1.0 x").is_err());
        assert_eq!(check_version("1:2.3~rc1-4+deb12u1"), Ok(()));
    }

    #[tokio::test]
    async fn version_and_list_read_the_status_database() {
        let (dir, host) = fake::host(|_| {});
        write_status(dir.path(), &[("curl", "7.88.1-10"), ("jq", "1.6-2.1")]);
        let o = version_on(&host, &call_of("pkg.version", vec![json!("curl")], &[]));
        assert_eq!(o.ret, json!("7.88.1-10"));
        let o = version_on(&host, &call_of("pkg.version", vec![json!("jq"), json!("nginx")], &[]));
        assert_eq!(o.ret, json!({"jq": "1.6-2.1", "nginx": ""}));
        let o = list_pkgs_on(&host, &call_of("pkg.list_pkgs", vec![], &[]));
        assert_eq!(o.ret, json!({"curl": "7.88.1-10", "jq": "1.6-2.1"}));
        assert!(host.runner.argvs().is_empty());

        let (_empty, host) = fake::host(|_| {});
        let o = list_pkgs_on(&host, &call_of("pkg.list_pkgs", vec![], &[]));
        assert!(
            o.ret.as_str().unwrap().contains("manage the packages of Debian and Ubuntu hosts"),
            "{}",
            o.ret
        );
    }

    #[tokio::test]
    async fn install_runs_apt_get_noninteractive_and_reports_old_and_new() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_path_buf();
        write_status(&r, &[("curl", "7.88.1-10")]);
        let host = Host {
            root: r.clone(),
            runner: fake::Recorder::new(move |argv| {
                if argv.contains(&"install") {
                    write_status(&r, &[("curl", "7.88.1-10"), ("jq", "1.6-2.1"), ("libjq1", "1.6-2.1")]);
                }
            }),
        };
        let call = call_of("pkg.install", vec![json!("jq")], &[("refresh", json!(true))]);
        let o = install_on(&host, &call).await;
        assert!(o.success, "{}", o.ret);
        assert_eq!(
            o.ret,
            json!({"jq": {"old": "", "new": "1.6-2.1"}, "libjq1": {"old": "", "new": "1.6-2.1"}})
        );
        assert_eq!(
            host.runner.argvs(),
            [
                "apt-get -q update",
                "apt-get -q -y -o DPkg::Options::=--force-confdef -o DPkg::Options::=--force-confold install jq",
            ]
        );
        let calls = host.runner.calls.lock().unwrap().clone();
        assert!(
            calls
                .iter()
                .all(|(_, env)| env == &[("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())])
        );
    }

    #[tokio::test]
    async fn install_checks_what_apt_get_did() {
        // apt-get "succeeds" but installs nothing; then one that fails
        let (dir, host) = fake::host(|_| {});
        write_status(dir.path(), &[]);
        let call = call_of("pkg.install", vec![json!("jq")], &[("version", json!("1.6-2.1"))]);
        let o = install_on(&host, &call).await;
        assert_eq!(o.ret, json!("pkg.install: apt-get install exited 0, but jq is not installed"));
        assert!(host.runner.argvs()[0].ends_with("install jq=1.6-2.1"));

        let (dir, mut host) = fake::host(|_| {});
        host.runner.retcode = 100;
        host.runner.stdout = "E: Unable to locate package nope".into();
        write_status(dir.path(), &[]);
        let o = install_on(&host, &call_of("pkg.install", vec![json!("nope")], &[])).await;
        let msg = o.ret.as_str().unwrap();
        assert!(msg.contains("exited 100: E: Unable to locate package nope"), "{msg}");
    }

    #[tokio::test]
    async fn remove_runs_apt_get_remove_only_for_installed_packages() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_path_buf();
        write_status(&r, &[("curl", "7.88.1-10"), ("jq", "1.6-2.1")]);
        let host = Host {
            root: r.clone(),
            runner: fake::Recorder::new(move |_| write_status(&r, &[("curl", "7.88.1-10")])),
        };
        let o = remove_on(&host, &call_of("pkg.remove", vec![], &[("pkgs", json!(["jq", "nginx"]))])).await;
        assert_eq!(o.ret, json!({"jq": {"old": "1.6-2.1", "new": ""}}));
        assert_eq!(
            host.runner.argvs(),
            ["apt-get -q -y -o DPkg::Options::=--force-confdef -o DPkg::Options::=--force-confold remove jq"]
        );
        // nothing left to remove: apt-get is not run
        let o = remove_on(&host, &call_of("pkg.remove", vec![json!("jq")], &[])).await;
        assert_eq!((o.success, o.ret), (true, json!({})));
        assert_eq!(host.runner.argvs().len(), 1);
    }

    #[tokio::test]
    async fn fleet_containers_and_bad_names_change_nothing() {
        let (dir, host) = fake::host(|_| {});
        write_status(dir.path(), &[]);
        let mut call = call_of("pkg.install", vec![json!("jq")], &[]);
        std::sync::Arc::make_mut(&mut call.grains).insert("fleet".into(), json!("coins"));
        let o = install_on(&host, &call).await;
        assert!(o.ret.as_str().unwrap().contains("change the image instead"), "{}", o.ret);
        call.fun = "pkg.remove".into();
        assert!(!remove_on(&host, &call).await.success);

        let o = install_on(&host, &call_of("pkg.install", vec![json!("--allow-unauthenticated")], &[])).await;
        assert!(o.ret.as_str().unwrap().contains("is not a Debian package name"), "{}", o.ret);
        let o = install_on(
            &host,
            &call_of("pkg.install", vec![json!("a1"), json!("b1")], &[("version", json!("1"))]),
        )
        .await;
        assert!(o.ret.as_str().unwrap().contains("version= is for one package"), "{}", o.ret);
        assert!(host.runner.argvs().is_empty());
    }
}

//! `user.present` and `group.present`: local accounts, read from `/etc/passwd` and
//! `/etc/group` (under the [`Host`]'s root) and made with `useradd`/`usermod` and
//! `groupadd`/`groupmod`. Only what a state names is checked and changed (a user's other
//! attributes are left as they are). Refused in a fleet container, whose accounts come
//! from its image.

use std::collections::BTreeSet;

use render::{GroupPresent, UserPresent};
use serde_json::{Map, Value, json};

use super::Outcome;
use crate::functions::host::{Host, Runner, refuse_state_in_fleet};

/// A line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// A line of `/etc/group`.
#[derive(Clone, Debug, PartialEq)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn users(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let [name, _, uid, gid, _, home, shell] = f.as_slice() else { return None };
            Some(User {
                name: name.to_string(),
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home: home.to_string(),
                shell: shell.to_string(),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let [name, _, gid, members] = f.as_slice() else { return None };
            Some(Group {
                name: name.to_string(),
                gid: gid.parse().ok()?,
                members: members.split(',').filter(|m| !m.is_empty()).map(String::from).collect(),
            })
        })
        .collect()
}

/// An account name useradd and groupadd take (never an option).
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .trim_end_matches('$')
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not an account name (lowercase letters, digits, _ - ., starting with a letter or _)"
        ))
    }
}

fn read<R: Runner>(host: &Host<R>, path: &str) -> Result<String, String> {
    let path = host.path(path);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub(crate) async fn group_present<R: Runner>(
    host: &Host<R>,
    g: &GroupPresent,
    grains: &Map<String, Value>,
    test: bool,
) -> Outcome {
    if let Some(message) = refuse_state_in_fleet(grains, "group.present") {
        return Outcome::fail(message);
    }
    group(host, g, test).await.unwrap_or_else(Outcome::fail)
}

async fn group<R: Runner>(host: &Host<R>, g: &GroupPresent, test: bool) -> Result<Outcome, String> {
    check_name(&g.name)?;
    let existing = groups(&read(host, "/etc/group")?).into_iter().find(|x| x.name == g.name);
    let gid = g.gid.map(|gid| gid.to_string());
    let (argv, comment, changes): (Vec<&str>, String, Value) = match &existing {
        None => {
            let mut argv = vec!["groupadd"];
            if g.system {
                argv.push("--system");
            }
            if let Some(gid) = &gid {
                argv.extend(["--gid", gid]);
            }
            argv.push(&g.name);
            (argv, format!("group {} created", g.name), json!({"name": g.name, "gid": g.gid}))
        }
        Some(found) if g.gid.is_some_and(|gid| gid != found.gid) => {
            let gid = gid.as_deref().unwrap_or_default();
            let comment = format!("group {} gid changed from {} to {gid}", g.name, found.gid);
            (vec!["groupmod", "--gid", gid, &g.name], comment, json!({"gid": g.gid}))
        }
        Some(_) => return Ok(Outcome::ok(format!("group {} is present", g.name))),
    };
    let changes = changes.as_object().cloned().unwrap_or_default();
    if test {
        return Ok(Outcome::changed(true, format!("would be: {comment}"), changes));
    }
    host.check(&argv, &[]).await?;
    Ok(Outcome::changed(false, comment, changes))
}

pub(crate) async fn user_present<R: Runner>(
    host: &Host<R>,
    u: &UserPresent,
    grains: &Map<String, Value>,
    test: bool,
) -> Outcome {
    if let Some(message) = refuse_state_in_fleet(grains, "user.present") {
        return Outcome::fail(message);
    }
    user(host, u, test).await.unwrap_or_else(Outcome::fail)
}

async fn user<R: Runner>(host: &Host<R>, u: &UserPresent, test: bool) -> Result<Outcome, String> {
    check_name(&u.name)?;
    let all_groups = groups(&read(host, "/etc/group")?);
    for g in u.groups.iter().flatten().chain(u.gid.iter().filter(|g| g.parse::<u32>().is_err())) {
        check_name(g)?;
        if !all_groups.iter().any(|x| &x.name == g) {
            return Err(format!(
                "group {g} does not exist; expected it (a group.present state required first)"
            ));
        }
    }
    let existing = users(&read(host, "/etc/passwd")?).into_iter().find(|x| x.name == u.name);
    let uid = u.uid.map(|uid| uid.to_string());
    let groups_arg = u.groups.as_ref().map(|g| g.join(","));
    let mut argv: Vec<&str>;
    let mut changes = Map::new();
    let comment;
    match &existing {
        None => {
            argv = vec!["useradd"];
            if u.system {
                argv.push("--system");
            }
            argv.push(if u.createhome { "--create-home" } else { "--no-create-home" });
            let options = [
                ("--uid", uid.as_deref()),
                ("--gid", u.gid.as_deref()),
                ("--home-dir", u.home.as_deref()),
                ("--shell", u.shell.as_deref()),
                // useradd takes no empty list: a new user has no supplementary group anyway
                ("--groups", groups_arg.as_deref().filter(|g| !g.is_empty())),
            ];
            for (flag, value) in options {
                if let Some(value) = value {
                    argv.extend([flag, value]);
                }
            }
            argv.push(&u.name);
            changes.insert("name".into(), json!(u.name));
            comment = format!("user {} created", u.name);
        }
        Some(found) => {
            argv = vec!["usermod"];
            let gid_now = all_groups.iter().find(|g| g.gid == found.gid).map(|g| g.name.as_str());
            let gid_differs = u.gid.as_deref().is_some_and(|want| match want.parse::<u32>() {
                Ok(n) => n != found.gid,
                Err(_) => Some(want) != gid_now,
            });
            let member_of: BTreeSet<&str> =
                all_groups.iter().filter(|g| g.members.contains(&u.name)).map(|g| g.name.as_str()).collect();
            let groups_differ = u
                .groups
                .as_ref()
                .is_some_and(|want| want.iter().map(String::as_str).collect::<BTreeSet<_>>() != member_of);
            let options = [
                ("--uid", "uid", uid.as_deref().filter(|v| *v != found.uid.to_string())),
                ("--gid", "gid", u.gid.as_deref().filter(|_| gid_differs)),
                ("--home", "home", u.home.as_deref().filter(|h| *h != found.home)),
                ("--shell", "shell", u.shell.as_deref().filter(|s| *s != found.shell)),
                ("--groups", "groups", groups_arg.as_deref().filter(|_| groups_differ)),
            ];
            for (flag, key, value) in options {
                if let Some(value) = value {
                    argv.extend([flag, value]);
                    changes.insert(key.into(), json!(value));
                }
            }
            if changes.is_empty() {
                return Ok(Outcome::ok(format!("user {} is present and as wanted", u.name)));
            }
            argv.push(&u.name);
            let keys: Vec<&str> = changes.keys().map(String::as_str).collect();
            comment = format!("user {} updated: {}", u.name, keys.join(", "));
        }
    }
    if test {
        return Ok(Outcome::changed(true, format!("would be: {comment}"), changes));
    }
    host.check(&argv, &[]).await?;
    Ok(Outcome::changed(false, comment, changes))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::functions::host::fake;

    fn accounts(root: &Path) {
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nredis:x:101:102::/var/lib/redis:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nredis:x:102:\nadm:x:4:redis\nssl-cert:x:110:\n")
            .unwrap();
    }

    fn user_state(name: &str) -> UserPresent {
        UserPresent {
            name: name.into(),
            uid: None,
            gid: None,
            home: None,
            shell: None,
            groups: None,
            system: false,
            createhome: true,
        }
    }

    #[tokio::test]
    async fn a_missing_user_is_created_with_useradd() {
        let (dir, host) = fake::host(|_| {});
        accounts(dir.path());
        let u = UserPresent {
            uid: Some(2000),
            shell: Some("/bin/bash".into()),
            groups: Some(vec!["adm".into(), "ssl-cert".into()]),
            ..user_state("deploy")
        };
        let o = user_present(&host, &u, &Map::new(), true).await;
        assert_eq!((o.result, o.comment.as_str()), (None, "would be: user deploy created"));
        assert!(host.runner.argvs().is_empty());
        let o = user_present(&host, &u, &Map::new(), false).await;
        assert_eq!(o.result, Some(true));
        assert_eq!(
            host.runner.argvs(),
            ["useradd --create-home --uid 2000 --shell /bin/bash --groups adm,ssl-cert deploy"]
        );
        let bare = UserPresent { groups: Some(vec![]), createhome: false, system: true, ..user_state("svc") };
        user_present(&host, &bare, &Map::new(), false).await;
        assert_eq!(host.runner.argvs().last().unwrap(), "useradd --system --no-create-home svc");
    }

    #[tokio::test]
    async fn an_existing_user_gets_only_what_differs() {
        let (dir, host) = fake::host(|_| {});
        accounts(dir.path());
        // as it is: nothing to do
        let same = UserPresent {
            gid: Some("redis".into()),
            home: Some("/var/lib/redis".into()),
            groups: Some(vec!["adm".into()]),
            ..user_state("redis")
        };
        let o = user_present(&host, &same, &Map::new(), false).await;
        assert_eq!((o.result, o.changed), (Some(true), false), "{}", o.comment);

        let other = UserPresent { shell: Some("/bin/sh".into()), groups: Some(vec![]), ..same };
        let o = user_present(&host, &other, &Map::new(), false).await;
        assert_eq!(o.comment, "user redis updated: groups, shell");
        assert_eq!(host.runner.argvs(), ["usermod --shell /bin/sh --groups  redis"]);

        let o = user_present(
            &host,
            &UserPresent { groups: Some(vec!["nope".into()]), ..user_state("x1") },
            &Map::new(),
            false,
        )
        .await;
        assert!(o.comment.contains("group nope does not exist"), "{}", o.comment);
        let o = user_present(&host, &user_state("-o"), &Map::new(), false).await;
        assert!(o.comment.contains("is not an account name"), "{}", o.comment);
        assert_eq!(host.runner.argvs().len(), 1);
    }

    #[tokio::test]
    async fn groups_and_fleet_containers() {
        let (dir, host) = fake::host(|_| {});
        accounts(dir.path());
        let g = |name: &str, gid| GroupPresent { name: name.into(), gid, system: true };
        assert!(!group_present(&host, &g("redis", None), &Map::new(), false).await.changed);
        assert!(group_present(&host, &g("app", Some(900)), &Map::new(), false).await.changed);
        assert!(group_present(&host, &g("redis", Some(103)), &Map::new(), false).await.changed);
        assert_eq!(host.runner.argvs(), ["groupadd --system --gid 900 app", "groupmod --gid 103 redis"]);

        let fleet = json!({"image": "coins"}).as_object().unwrap().clone();
        let o = user_present(&host, &user_state("deploy"), &fleet, false).await;
        assert!(o.comment.starts_with("user.present is not available in a fleet container"), "{}", o.comment);
        let o = group_present(&host, &g("app", None), &fleet, false).await;
        assert_eq!(o.result, Some(false));
        assert_eq!(host.runner.argvs().len(), 2);
    }
}

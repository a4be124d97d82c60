//! One service of the compose file, key by key, into a [`Service`]: what is translated is
//! kept, what is not is reported at its line.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::interpolate::env_file;
use crate::model::{Build, HealthSpec, Service, Source};
use crate::mounts::{self, read_error};
use crate::ports;
use crate::project::Project;
use crate::reader::{Key, Reader, describe};
use crate::sources::{Kind, Sources, relative};

/// What reading a service needs besides the file: the top level's definitions, the
/// project's files, and where files the states write go.
pub(crate) struct Ctx<'a> {
    pub(crate) fleet: String,
    pub(crate) project: &'a Project,
    pub(crate) sources: &'a dyn Sources,
    /// The project folder's absolute path, when known: bind mounts written with it are
    /// inside the project.
    pub(crate) project_dir: Option<&'a str>,
    /// The variables of the environment and `.env`.
    pub(crate) vars: &'a dyn Fn(&str) -> Option<String>,
    /// Files for `states/<fleet>/…`: path relative to the fleet's folder → contents.
    pub(crate) files: BTreeMap<String, Vec<u8>>,
}

impl Ctx<'_> {
    /// Keeps `contents` as `states/<fleet>/<path>`; returns the path relative to `states/`
    /// (what `file.managed`'s `source` names).
    pub(crate) fn file(&mut self, path: &str, contents: Vec<u8>) -> String {
        self.files.insert(path.to_string(), contents);
        self.file_path(path)
    }

    pub(crate) fn file_path(&self, path: &str) -> String {
        format!("{}/{path}", self.fleet)
    }
}

/// Keys drover has no counterpart for, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "privileged",
        "drover runs no privileged container: what needs it (mounts, devices, kernel settings) belongs in the \
         image or on the host",
    ),
    ("devices", "drover passes no host device into a container"),
    ("device_cgroup_rules", "drover passes no host device into a container"),
    ("gpus", "drover gives a container no GPU"),
    ("cap_add", "drover containers have Docker's default capabilities: the daemon runs without these"),
    (
        "cap_drop",
        "drover containers have Docker's default capabilities: the daemon runs with those Compose dropped",
    ),
    ("security_opt", "drover sets no security options (seccomp, AppArmor, SELinux, no-new-privileges)"),
    ("pid", "a drover container has a PID namespace of its own, with drover-minion as PID 1"),
    ("ipc", "a drover container has an IPC namespace of its own"),
    ("uts", "a drover container has a UTS namespace of its own"),
    ("userns_mode", "drover containers use the engine's user namespace setting"),
    ("cgroup", "drover containers use the engine's cgroup settings"),
    ("cgroup_parent", "drover containers use the engine's cgroup settings"),
    ("isolation", "drover containers use the engine's isolation"),
    ("runtime", "drover containers use the engine's default runtime"),
    ("storage_opt", "drover containers use the engine's storage settings"),
    ("group_add", "the daemon runs with the groups its user has in the image's /etc/group; add them there"),
    ("read_only", "a drover container's root file system is writable (drover-minion keeps its state there)"),
    ("tmpfs", "drover mounts no tmpfs: the path is an ordinary folder of the container"),
    (
        "extra_hosts",
        "drover adds no /etc/hosts entries: give names to roles with `aliases:` in fleet.yaml, or use DNS",
    ),
    ("dns", "drover containers use the engine's DNS on the fleet's network"),
    ("dns_search", "drover containers use the engine's DNS on the fleet's network"),
    ("dns_opt", "drover containers use the engine's DNS on the fleet's network"),
    ("hostname", "a fleet container's host name is its slot's name (<fleet>-<role>-<n>)"),
    ("domainname", "a fleet container's host name is its slot's name (<fleet>-<role>-<n>)"),
    ("mac_address", "the engine gives each container its address"),
    ("volumes_from", "drover shares no volume between containers: each slot has its own"),
    ("external_links", "reach containers outside the fleet by an address or DNS name of theirs"),
    (
        "extends",
        "extends is not merged here: run `docker compose config > compose.merged.yml` and import that file \
         (Compose writes the services with what they extend merged in)",
    ),
    ("tty", "a daemon has no terminal"),
    ("stdin_open", "a daemon's standard input is /dev/null"),
    ("attach", "a daemon's output goes to its log (`drover <slot> daemon.status`)"),
    (
        "labels",
        "drover gives its containers its own labels (drover.fleet, drover.role, drover.slot, drover.version) \
         and no others",
    ),
    ("label_file", "drover gives its containers its own labels and no others"),
    ("annotations", "drover sets no annotations"),
    (
        "logging",
        "drover keeps each daemon's output in a log of its own (`drover <slot> daemon.status`); logging drivers \
         do not apply",
    ),
    ("platform", "drover builds images for the platform of the master's engine"),
    ("sysctls", "drover sets no kernel parameters in its containers"),
    ("ulimits", "drover sets no ulimits: set them in the command (ulimit) or on the engine"),
    ("shm_size", "drover containers have the engine's default /dev/shm"),
    ("oom_kill_disable", "fleet.yaml's resources are cpus and memory"),
    ("oom_score_adj", "fleet.yaml's resources are cpus and memory"),
    ("pids_limit", "fleet.yaml's resources are cpus and memory"),
    ("mem_reservation", "fleet.yaml's resources are cpus and memory (a limit)"),
    ("memswap_limit", "fleet.yaml's resources are cpus and memory"),
    ("mem_swappiness", "fleet.yaml's resources are cpus and memory"),
    ("cpu_shares", "fleet.yaml's resources are cpus and memory"),
    ("cpu_quota", "fleet.yaml's resources are cpus and memory: write `cpus:`"),
    ("cpu_period", "fleet.yaml's resources are cpus and memory: write `cpus:`"),
    ("cpuset", "fleet.yaml's resources are cpus and memory"),
    ("cpu_count", "fleet.yaml's resources are cpus and memory"),
    ("cpu_percent", "fleet.yaml's resources are cpus and memory"),
    ("cpu_rt_runtime", "fleet.yaml's resources are cpus and memory"),
    ("cpu_rt_period", "fleet.yaml's resources are cpus and memory"),
    ("blkio_config", "fleet.yaml's resources are cpus and memory"),
    ("credential_spec", "drover containers run on Linux"),
    ("develop", "`docker compose watch` has no drover counterpart: build and roll out a new image version"),
    ("post_start", "make it a state of the role (cmd.run) instead of a lifecycle hook"),
    ("pre_stop", "make it a state of the role, or the daemon's stop_signal, instead of a lifecycle hook"),
    ("use_api_socket", "drover gives no container the Docker socket"),
    ("models", "drover provides no models"),
    ("provider", "drover runs containers only"),
];

/// Reads the service `key` whose settings are `body`.
pub(crate) fn read(r: &mut Reader, key: &Key, body: &Value, ctx: &mut Ctx) -> Service {
    let mut s = Service {
        name: key.name.clone(),
        at: key.at,
        path: key.path.clone(),
        replicas: 1,
        ..Service::default()
    };
    let mut image = None;
    let mut build = None;
    let mut scale = None;
    let mut deploy_replicas = None;
    let mut env_files = Vec::new();
    let mut environment = Vec::new();
    let mut networks_given = false;
    if !matches!(body, Value::Mapping(_)) {
        r.error(
            key.at,
            &key.path,
            format!("expected the service's settings as a map, got {}", describe(body)),
        );
        return s;
    }
    for (k, v) in r.map(body, Some(key)) {
        let path = k.path.clone();
        match k.name.as_str() {
            "image" => image = r.key_string(&k, v).map(|i| (i, r.value_at(&k))),
            "build" => build = Some((k.clone(), v)),
            "command" => s.command = r.command(&k, v),
            "entrypoint" => s.entrypoint = r.command(&k, v),
            "environment" => environment = env_list(r, &k, v, ctx, "the state"),
            "env_file" => env_files = read_env_files(r, &k, v, ctx),
            "working_dir" => {
                if let Some(dir) = r.key_string(&k, v) {
                    if dir.starts_with('/') {
                        s.working_dir = Some(dir);
                    } else {
                        let at = r.value_at(&k);
                        r.error(at, &path, format!("`{dir}` is not an absolute path"));
                    }
                }
            }
            "user" => s.user = r.key_string(&k, v).map(|u| (u, r.value_at(&k))),
            "healthcheck" => s.health = Some(health(r, &k, v)),
            "ports" => s.ports = ports::read(r, &k, v),
            "expose" => {} // every port is reachable on the fleet's network
            "volumes" => mounts::volumes(r, &k, v, ctx, &mut s),
            "secrets" | "configs" => mounts::files(r, &k, v, ctx, &mut s),
            "depends_on" => depends_on(r, &k, v, &mut s),
            "links" => {
                for (at, link) in r.strings(&k, v) {
                    let (target, alias) = match link.split_once(':') {
                        Some((t, a)) => (t.to_string(), Some(a.to_string())),
                        None => (link.clone(), None),
                    };
                    s.requires.push((target.clone(), at));
                    if let Some(alias) = alias.filter(|a| *a != target) {
                        s.link_aliases.push((target, alias, at));
                    }
                }
            }
            "deploy" => deploy(r, &k, v, &mut s, &mut deploy_replicas),
            "scale" => scale = r.whole(&k, v).map(|n| (u32::try_from(n).unwrap_or(u32::MAX), r.value_at(&k))),
            "restart" => restart(r, &k, v, &mut s),
            "container_name" => {
                if let Some(name) = r.key_string(&k, v) {
                    let at = r.value_at(&k);
                    r.note(
                        at,
                        &path,
                        format!(
                            "drover names the container after its slot (<fleet>-{}-1); `{name}` is kept as an alias \
                             of the role, so the name still reaches it",
                            s.name
                        ),
                    );
                    s.aliases.push((name, at));
                }
            }
            "networks" => {
                networks_given = true;
                networks(r, &k, v, ctx.project, &mut s);
            }
            "network_mode" => {
                let mode = r.key_string(&k, v).unwrap_or_default();
                r.left_out(
                    k.at,
                    &path,
                    format!(
                        "drover containers join the fleet's network only, not `{mode}`: publish the ports the \
                         service serves (ports:) and reach others by their role's name"
                    ),
                );
            }
            "stop_signal" => s.stop_signal = r.key_string(&k, v),
            "stop_grace_period" => s.stop_timeout_ms = r.duration(&k, v),
            "init" => {
                if r.boolean(&k, v) == Some(true) {
                    r.note(
                        k.at,
                        &path,
                        "drover-minion is PID 1 in every drover container, and reaps orphans",
                    );
                }
            }
            "profiles" => {
                let names: Vec<String> = r.strings(&k, v).into_iter().map(|(_, p)| p).collect();
                s.replicas = 0;
                scale = None;
                r.note(
                    k.at,
                    &path,
                    format!(
                        "a service of the profiles {} does not start by default: its role has 0 replicas \
                         (`drover scale {}=1` starts one)",
                        names.join(", "),
                        s.name
                    ),
                );
            }
            "pull_policy" => {
                r.note(k.at, &path, "drover pulls nothing: the image is built by `drover image build`");
            }
            "mem_limit" => {
                if let Some(text) = r.key_string(&k, v) {
                    s.resources.memory = memory(r, &k, &text);
                }
            }
            "cpus" => {
                if let Some(text) = r.key_string(&k, v) {
                    s.resources.cpus = cpus(r, &k, &text);
                }
            }
            name if name.starts_with("x-") => {}
            name => match UNSUPPORTED.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => r.left_out(k.at, &path, why),
                None => r.left_out(
                    k.at,
                    &path,
                    format!("`{name}` is not a key of a Compose service; it is not used"),
                ),
            },
        }
    }
    if !networks_given {
        s.networks.push("default".into());
    }
    match (deploy_replicas, scale) {
        (Some((n, _)), Some((m, at))) if n != m => {
            r.note(
                at,
                &format!("{}.scale", s.path),
                format!("deploy.replicas ({n}) is used, not scale ({m})"),
            );
            s.replicas = n;
        }
        (Some((n, _)), _) | (None, Some((n, _))) => s.replicas = n,
        (None, None) => {}
    }
    if s.replicas > render::MAX_REPLICAS {
        r.error(
            s.at,
            &s.path,
            format!("{} replicas; drover runs at most {} per role", s.replicas, render::MAX_REPLICAS),
        );
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in env_files.into_iter().chain(environment) {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    }
    s.env = env;
    s.source = match (build, image) {
        (Some((k, v)), _) => read_build(r, &k, v, ctx),
        (None, Some((reference, at))) => Source::Image { reference, at },
        (None, None) => {
            r.error(s.at, &s.path, "the service has neither `image:` nor `build:`; expected one");
            Source::None
        }
    };
    s
}

/// `environment:` as a map or a list of `NAME=value`; a name without a value takes the
/// value of the environment the import runs in, as Compose does when it starts.
fn env_list(r: &mut Reader, key: &Key, value: &Value, ctx: &Ctx, into: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, Option<String>, render::locate::At)> = Vec::new();
    match value {
        Value::Mapping(_) => {
            for (k, v) in r.map(value, Some(key)) {
                let at = r.value_at(&k);
                let value = match v {
                    Value::Null => None,
                    other => r.string(at, &k.path, other),
                };
                pairs.push((k.name, value, k.at));
            }
        }
        _ => {
            for (at, item) in r.list(key, value).unwrap_or_default() {
                let Some(text) = r.string(at, &key.path, item) else { continue };
                match text.split_once('=') {
                    Some((name, value)) => pairs.push((name.to_string(), Some(value.to_string()), at)),
                    None => pairs.push((text, None, at)),
                }
            }
        }
    }
    let mut env = Vec::new();
    for (name, value, at) in pairs {
        match value {
            Some(value) => env.push((name, value)),
            None => match ctx.sources.var(&name) {
                Some(value) => {
                    r.note(
                        at,
                        &key.path,
                        format!("{name} has its value from your environment now, written into {into}"),
                    );
                    env.push((name, value));
                }
                None => r.note(
                    at,
                    &key.path,
                    format!("{name} is not set in your environment: it is left out of {into}"),
                ),
            },
        }
    }
    env
}

/// `env_file:` (a path, a list, or `{path, required, format}` items), read and inlined.
fn read_env_files(r: &mut Reader, key: &Key, value: &Value, ctx: &Ctx) -> Vec<(String, String)> {
    let items: Vec<(render::locate::At, Value)> = match value {
        Value::String(_) => vec![(r.value_at(key), value.clone())],
        _ => r.list(key, value).unwrap_or_default().into_iter().map(|(at, v)| (at, v.clone())).collect(),
    };
    let mut env = Vec::new();
    for (at, item) in items {
        let (mut path, mut required, mut raw) = (None, true, false);
        match &item {
            Value::Mapping(_) => {
                for (k, v) in r.item_map(at, &key.path, &item) {
                    match k.name.as_str() {
                        "path" => path = r.key_string(&k, v),
                        "required" => required = r.boolean(&k, v).unwrap_or(true),
                        "format" => raw = r.key_string(&k, v).as_deref() == Some("raw"),
                        other => r.left_out(k.at, &k.path, format!("`{other}` is not a key of an env_file")),
                    }
                }
            }
            other => path = r.string(at, &key.path, other),
        }
        let Some(path) = path else { continue };
        let rel = relative(&path);
        let file = rel.clone().unwrap_or_else(|| path.clone());
        let text = match ctx.sources.read(&file).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                r.error(at, &key.path, format!("{path} is not UTF-8 text"));
                continue;
            }
            Err(crate::sources::ReadError::Missing) if !required => continue,
            Err(e) => {
                r.error(at, &key.path, format!("cannot read {path}: {}", read_error(&e)));
                continue;
            }
        };
        match env_file(&text, raw, ctx.vars) {
            Ok(vars) => {
                for (name, value) in vars {
                    match value.or_else(|| ctx.sources.var(&name)) {
                        Some(value) => env.push((name, value)),
                        None => continue,
                    }
                }
                r.note(
                    at,
                    &key.path,
                    format!(
                        "the variables of {path} are written into the state, as Compose reads them when it \
                         creates the container: import again, or edit the state, when the file changes"
                    ),
                );
            }
            Err((line, message)) => r.errors.push(render::Diagnostic::new(file, line, 1, message)),
        }
    }
    env
}

/// `healthcheck:`
fn health(r: &mut Reader, key: &Key, value: &Value) -> HealthSpec {
    let mut h = HealthSpec { at: key.at, ..HealthSpec::default() };
    for (k, v) in r.map(value, Some(key)) {
        match k.name.as_str() {
            "test" => {
                h.test = match v {
                    Value::String(_) => r.key_string(&k, v).map(|line| vec!["CMD-SHELL".into(), line]),
                    _ => Some(r.strings(&k, v).into_iter().map(|(_, s)| s).collect()),
                }
            }
            "interval" => h.interval_ms = r.duration(&k, v),
            "timeout" => h.timeout_ms = r.duration(&k, v),
            "start_period" => h.start_period_ms = r.duration(&k, v),
            "start_interval" => {
                r.note(
                    k.at,
                    &k.path,
                    "drover checks at `interval` from the start; start_interval is not kept",
                );
            }
            "retries" => h.retries = r.whole(&k, v).and_then(|n| u32::try_from(n).ok()),
            "disable" => h.disabled = r.boolean(&k, v).unwrap_or(false),
            other => r.left_out(k.at, &k.path, format!("`{other}` is not a key of a health check")),
        }
    }
    h
}

/// `depends_on:` as a list or a map of conditions → the role's `requires`.
fn depends_on(r: &mut Reader, key: &Key, value: &Value, s: &mut Service) {
    if !matches!(value, Value::Mapping(_)) {
        for (at, name) in r.strings(key, value) {
            s.requires.push((name, at));
        }
        return;
    }
    for (dep, settings) in r.map(value, Some(key)) {
        let mut required = true;
        let mut condition = "service_started".to_string();
        for (k, v) in r.map(settings, Some(&dep)) {
            match k.name.as_str() {
                "condition" => condition = r.key_string(&k, v).unwrap_or(condition),
                "required" => required = r.boolean(&k, v).unwrap_or(true),
                "restart" => {
                    if r.boolean(&k, v) == Some(true) {
                        r.left_out(
                            k.at,
                            &k.path,
                            format!("drover does not restart {}'s daemon when {} restarts", s.name, dep.name),
                        );
                    }
                }
                other => r.left_out(k.at, &k.path, format!("`{other}` is not a key of a dependency")),
            }
        }
        if !required {
            r.note(dep.at, &dep.path, "an optional dependency: the role does not require it");
            continue;
        }
        match condition.as_str() {
            "service_started" => s.requires.push((dep.name.clone(), dep.at)),
            "service_healthy" => {
                r.note(
                    dep.at,
                    &dep.path,
                    format!(
                        "drover starts the daemons of {} once a member of {} has converged (its daemons started), \
                         not once it is healthy",
                        s.name, dep.name
                    ),
                );
                s.requires.push((dep.name.clone(), dep.at));
            }
            "service_completed_successfully" => r.left_out(
                dep.at,
                &dep.path,
                format!(
                    "drover runs no one-off containers: a role's daemons run for good. Make {}'s one-off work \
                     a cmd.run state of the role {} (it runs before the daemon), or a `drover` job",
                    dep.name, s.name
                ),
            ),
            other => {
                let at = dep.at;
                r.error(at, &dep.path, format!("unknown condition `{other}`; expected service_started, service_healthy or service_completed_successfully"));
            }
        }
    }
}

/// `networks:` of a service: the aliases it has on them.
fn networks(r: &mut Reader, key: &Key, value: &Value, project: &Project, s: &mut Service) {
    let names: Vec<(Key, Option<&Value>)> = match value {
        Value::Mapping(_) => r.map(value, Some(key)).into_iter().map(|(k, v)| (k, Some(v))).collect(),
        _ => r
            .strings(key, value)
            .into_iter()
            .map(|(at, name)| (Key { path: key.path.clone(), name, at }, None))
            .collect(),
    };
    for (net, settings) in names {
        if net.name != "default" && !project.networks.contains_key(&net.name) {
            r.error(
                net.at,
                &net.path,
                format!(
                    "the network `{}` is not defined; expected it under the top-level `networks:`",
                    net.name
                ),
            );
            continue;
        }
        s.networks.push(net.name.clone());
        let Some(settings) = settings else { continue };
        for (k, v) in r.map(settings, Some(&net)) {
            match k.name.as_str() {
                "aliases" => {
                    for (at, alias) in r.strings(&k, v) {
                        s.aliases.push((alias, at));
                    }
                }
                "priority" | "gw_priority" => {}
                other => r.left_out(k.at, &k.path, format!("the engine gives each container its address on the fleet's network; `{other}` is not used")),
            }
        }
    }
}

/// `restart:` → the daemon's restart policy: the container's restart is the minion's, and
/// the command it ran is the daemon's.
fn restart(r: &mut Reader, key: &Key, value: &Value, s: &mut Service) {
    let Some(policy) = r.key_string(key, value) else { return };
    let at = r.value_at(key);
    s.restart = Some(match policy.split(':').next().unwrap_or_default() {
        "no" | "" => {
            r.note(
                at,
                &key.path,
                "the daemon is not restarted when it exits (restart: never); a daemon that is not running makes \
                 its minion unhealthy: a one-off task fits a cmd.run state better",
            );
            "never"
        }
        "always" | "unless-stopped" => "always",
        "on-failure" => {
            if policy.contains(':') {
                r.note(
                    at,
                    &key.path,
                    "drover restarts a failed daemon with backoff, with no limit on the count",
                );
            }
            "on-failure"
        }
        other => {
            r.error(
                at,
                &key.path,
                format!(
                    "unknown restart policy `{other}`; expected no, always, on-failure or unless-stopped"
                ),
            );
            return;
        }
    });
}

/// `deploy:` → replicas, resources, update policy, restart policy.
fn deploy(
    r: &mut Reader,
    key: &Key,
    value: &Value,
    s: &mut Service,
    replicas: &mut Option<(u32, render::locate::At)>,
) {
    for (k, v) in r.map(value, Some(key)) {
        match k.name.as_str() {
            "replicas" => {
                *replicas = r.whole(&k, v).map(|n| (u32::try_from(n).unwrap_or(u32::MAX), r.value_at(&k)));
            }
            "mode" => {
                let mode = r.key_string(&k, v).unwrap_or_default();
                if mode == "global" || mode == "global-job" {
                    r.left_out(k.at, &k.path, "drover has no global mode (one container per node): the role runs `replicas` slots");
                } else if mode == "replicated-job" {
                    r.left_out(k.at, &k.path, "drover runs no jobs as containers: the role's daemons run for good");
                }
            }
            "resources" => {
                for (part, limits) in r.map(v, Some(&k)) {
                    if part.name != "limits" {
                        r.left_out(part.at, &part.path, "fleet.yaml's resources are limits (cpus and memory); reservations are not kept");
                        continue;
                    }
                    for (limit, value) in r.map(limits, Some(&part)) {
                        match limit.name.as_str() {
                            "cpus" => {
                                if let Some(text) = r.key_string(&limit, value) {
                                    s.resources.cpus = cpus(r, &limit, &text);
                                }
                            }
                            "memory" => {
                                if let Some(text) = r.key_string(&limit, value) {
                                    s.resources.memory = memory(r, &limit, &text);
                                }
                            }
                            _ => r.left_out(limit.at, &limit.path, "fleet.yaml's resources are cpus and memory"),
                        }
                    }
                }
            }
            "restart_policy" => {
                for (p, value) in r.map(v, Some(&k)) {
                    match p.name.as_str() {
                        "condition" => {
                            let condition = r.key_string(&p, value).unwrap_or_default();
                            s.restart = match condition.as_str() {
                                "none" => Some("never"),
                                "on-failure" => Some("on-failure"),
                                "any" => Some("always"),
                                other => {
                                    let at = r.value_at(&p);
                                    r.error(at, &p.path, format!("unknown condition `{other}`; expected none, on-failure or any"));
                                    continue;
                                }
                            };
                        }
                        _ => r.note(p.at, &p.path, "drover restarts a daemon with its own backoff; this setting is not kept"),
                    }
                }
            }
            "update_config" => update(r, &k, v, s),
            "rollback_config" => r.left_out(
                k.at,
                &k.path,
                "drover rolls a failed batch back to the old version by the role's update policy (fleet.yaml's \
                 update.on_failure); this setting is not kept",
            ),
            "placement" => r.left_out(k.at, &k.path, "the fleet runs on one engine: placement does not apply"),
            "labels" => r.left_out(k.at, &k.path, "drover gives its containers its own labels and no others"),
            "endpoint_mode" => r.note(k.at, &k.path, "each role's name resolves to the addresses of its containers"),
            name if name.starts_with("x-") => {}
            other => r.left_out(k.at, &k.path, format!("`{other}` is not a key of deploy")),
        }
    }
}

/// `deploy.update_config` → fleet.yaml's `update:`.
fn update(r: &mut Reader, key: &Key, value: &Value, s: &mut Service) {
    for (k, v) in r.map(value, Some(key)) {
        match k.name.as_str() {
            "parallelism" => {
                s.update.batch =
                    r.whole(&k, v).map(|n| if n == 0 { "100%".to_string() } else { n.to_string() });
            }
            "order" => {
                let order = r.key_string(&k, v).unwrap_or_default();
                if order == "start-first" || order == "stop-first" {
                    s.update.order = Some((order, r.value_at(&k)));
                } else {
                    let at = r.value_at(&k);
                    r.error(at, &k.path, format!("expected stop-first or start-first, got `{order}`"));
                }
            }
            "failure_action" => {
                let action = r.key_string(&k, v).unwrap_or_default();
                s.update.on_failure = match action.as_str() {
                    "rollback" => Some("rollback"),
                    "pause" => Some("pause"),
                    "continue" => Some("continue"),
                    other => {
                        let at = r.value_at(&k);
                        r.error(at, &k.path, format!("expected rollback, pause or continue, got `{other}`"));
                        None
                    }
                };
            }
            "monitor" => s.update.min_healthy = r.duration(&k, v),
            "max_failure_ratio" => {
                let text = r.key_string(&k, v).unwrap_or_default();
                match text.parse::<f64>() {
                    Ok(ratio) if (0.0..=1.0).contains(&ratio) => s.update.max_failure_ratio = Some(ratio),
                    _ => {
                        let at = r.value_at(&k);
                        r.error(at, &k.path, format!("expected a ratio from 0 to 1, got `{text}`"));
                    }
                }
            }
            "delay" => r.note(
                k.at,
                &k.path,
                "drover goes on with the next batch once one is healthy; the delay is not kept",
            ),
            other => r.left_out(k.at, &k.path, format!("`{other}` is not a key of update_config")),
        }
    }
}

/// CPUs as Compose writes them (`0.5`, `"1.5"`).
fn cpus(r: &mut Reader, key: &Key, text: &str) -> Option<f64> {
    match text.trim().parse::<f64>() {
        Ok(c) if c > 0.0 && c.is_finite() => Some(c),
        Ok(_) => None, // 0: no limit
        Err(_) => {
            let at = r.value_at(key);
            r.error(at, &key.path, format!("expected a number of CPUs such as 0.5, got `{text}`"));
            None
        }
    }
}

/// Memory as Compose writes it (`512m`, `1gb`, bytes).
fn memory(r: &mut Reader, key: &Key, text: &str) -> Option<u64> {
    let at = r.value_at(key);
    let trimmed = text.trim();
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    match render::fleet::scalar::memory(&compact) {
        Ok(bytes) => Some(bytes),
        Err(e)
            if compact.parse::<u64>().is_ok_and(|b| b < render::fleet::scalar::MIN_MEMORY)
                || e.contains("below") =>
        {
            r.left_out(at, &key.path, format!("{e}: the role has no memory limit"));
            None
        }
        Err(e) => {
            r.error(at, &key.path, e);
            None
        }
    }
}

/// `build:`: a context folder (string), or `{context, dockerfile, dockerfile_inline, args,
/// target, …}`.
fn read_build(r: &mut Reader, key: &Key, value: &Value, ctx: &mut Ctx) -> Source {
    let at = r.value_at(key);
    let mut context = None;
    let mut dockerfile = None;
    let mut inline = None;
    let mut args = BTreeMap::new();
    let mut target = None;
    match value {
        Value::Mapping(_) => {
            for (k, v) in r.map(value, Some(key)) {
                match k.name.as_str() {
                    "context" => context = r.key_string(&k, v).map(|c| (c, r.value_at(&k))),
                    "dockerfile" => dockerfile = r.key_string(&k, v).map(|d| (d, r.value_at(&k))),
                    "dockerfile_inline" => inline = r.key_string(&k, v),
                    "target" => target = r.key_string(&k, v),
                    "args" => {
                        for (name, value) in env_list(r, &k, v, ctx, "the Dockerfile") {
                            args.insert(name, value);
                        }
                    }
                    "cache_from" | "cache_to" | "no_cache" | "pull" | "tags" | "labels" | "platforms"
                    | "privileged" => {}
                    name if name.starts_with("x-") => {}
                    other => r.left_out(
                        k.at,
                        &k.path,
                        format!(
                            "drover's image build takes a folder and its Dockerfile; `{other}` is not used"
                        ),
                    ),
                }
            }
        }
        _ => context = r.key_string(key, value).map(|c| (c, at)),
    }
    let (context_text, context_at) = context.unwrap_or_else(|| (".".into(), at));
    if context_text.contains("://") || context_text.starts_with("git@") {
        r.left_out(
            context_at,
            &key.path,
            format!(
                "the build context {context_text} is not a folder of the project: clone it into the project and \
                 import again; until then the image builds on the base alone"
            ),
        );
        return Source::None;
    }
    let Some(context) = relative(&context_text) else {
        r.left_out(
            context_at,
            &key.path,
            format!("the build context {context_text} is outside the project: move it in and import again"),
        );
        return Source::None;
    };
    if ctx.sources.kind(&context) != Some(Kind::Dir) {
        r.error(context_at, &key.path, format!("the build context {context_text} is not a folder"));
        return Source::None;
    }
    let join = |name: &str| if context.is_empty() { name.to_string() } else { format!("{context}/{name}") };
    let (dockerfile_path, text) = match (inline, dockerfile) {
        (Some(text), _) => (format!("{}.dockerfile_inline", key.path), text),
        (None, Some((name, _))) if name.starts_with('/') => {
            (name.clone(), read_text(r, ctx, &name, at, &key.path))
        }
        (None, Some((name, _))) => {
            let path = relative(&join(&name)).unwrap_or_default();
            let text = read_text(r, ctx, &path, at, &key.path);
            (path, text)
        }
        (None, None) => {
            let path = join("Dockerfile");
            let text = read_text(r, ctx, &path, at, &key.path);
            (path, text)
        }
    };
    Source::Build(Build { context, dockerfile_path, dockerfile: text, args, target, at })
}

fn read_text(r: &mut Reader, ctx: &Ctx, path: &str, at: render::locate::At, key: &str) -> String {
    match ctx.sources.read(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            r.error(at, key, format!("{path} is not UTF-8 text"));
            String::new()
        }
        Err(e) => {
            r.error(at, key, format!("cannot read {path}: {}", read_error(&e)));
            String::new()
        }
    }
}

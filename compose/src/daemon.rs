//! The daemon of a service: the command its container ran (the image's entrypoint and
//! command, or Compose's), as its user, in its folder, with its environment, health check
//! and stop signal. Under drover the container's entrypoint is drover-minion, and the
//! command becomes the daemon its role's state runs.

use render::Diagnostic;

use crate::dockerfile::{Dockerfile, Resolved};
use crate::image::{ImageConfig, Reference};
use crate::model::{Check, Daemon, Service, Source};
use crate::reader::Reader;
use crate::report::Level;
use crate::sources::Sources;

/// Docker's health check defaults.
const INTERVAL_MS: u64 = 30_000;
const TIMEOUT_MS: u64 = 30_000;
const RETRIES: u32 = 3;

/// The signals `daemon.running` takes as `stop_signal`.
const SIGNALS: [&str; 10] = ["HUP", "INT", "QUIT", "ABRT", "KILL", "USR1", "USR2", "ALRM", "TERM", "WINCH"];

/// Works out `s.daemon` (and `s.dockerfile`), and adds the image's volumes to the role's.
pub(crate) fn resolve(r: &mut Reader, s: &mut Service, sources: &dyn Sources) {
    let base = match &s.source {
        Source::Image { reference, at } => {
            let at = *at;
            if let Some((why, instead)) = Reference::parse(reference).musl() {
                r.left_out(
                    at,
                    &format!("{}.image", s.path),
                    format!("{reference} cannot run drover-minion, which needs the GNU C library (glibc): {why}; {instead}"),
                );
            }
            match sources.image(reference) {
                Some(config) => Resolved::known(config),
                None => Resolved {
                    config: ImageConfig::default(),
                    unknown: Some((reference.clone(), 0)),
                    entrypoint_known: false,
                    cmd_known: false,
                    musl: None,
                },
            }
        }
        Source::Build(build) => {
            let file = build.dockerfile_path.clone();
            match Dockerfile::parse(&build.dockerfile, &build.args) {
                Err((line, message)) => {
                    r.errors.push(Diagnostic::new(&file, line, 0, message));
                    return;
                }
                Ok(dockerfile) => match dockerfile.target(build.target.as_deref()) {
                    None => {
                        let target = build.target.clone().unwrap_or_default();
                        r.error(
                            build.at,
                            &format!("{}.build.target", s.path),
                            format!("{file} has no stage named `{target}`"),
                        );
                        return;
                    }
                    Some(index) => {
                        let resolved = dockerfile.config(index, &build.args, sources);
                        if let Some((image, line, why, instead)) = &resolved.musl {
                            r.finding_in(
                                &file,
                                *line,
                                Level::LeftOut,
                                "",
                                format!("{image} cannot run drover-minion, which needs the GNU C library (glibc): {why}; {instead}"),
                            );
                        }
                        s.dockerfile = Some((dockerfile, index));
                        resolved
                    }
                },
            }
        }
        Source::None => Resolved {
            config: ImageConfig::default(),
            unknown: Some((String::new(), 0)),
            entrypoint_known: false,
            cmd_known: false,
            musl: None,
        },
    };
    s.daemon = daemon(r, s, &base);
    for path in base.config.volumes.iter().flat_map(|v| v.keys()) {
        let covered = s.volumes.iter().any(|v| v.target == *path)
            || s.files.iter().any(|f| f.target == *path)
            || s.copies.iter().any(|(_, t)| t == path);
        if covered || render::fleet::scalar::volume_path(path).is_err() {
            continue;
        }
        r.note(
            s.at,
            &s.path,
            format!(
                "the image declares the volume {path}: each slot gets its own volume there, as Docker gives each \
                 container one"
            ),
        );
        s.volumes.push(crate::model::Volume { target: path.clone(), named: None, at: s.at });
    }
}

fn daemon(r: &mut Reader, s: &Service, base: &Resolved) -> Daemon {
    let config = &base.config;
    let image = match &base.unknown {
        Some((image, _)) if !image.is_empty() => format!("the image {image}"),
        Some(_) => "the image".to_string(),
        None => String::new(),
    };
    let why_unknown = format!(
        "{image} is not on this machine's Docker engine (`drover import compose` reads an image's entrypoint, \
         command, user, folder and environment with `docker image inspect`): pull it and import again, or give \
         `entrypoint:` and `command:` in the compose file"
    );
    // Docker: the container runs entrypoint + command; Compose's `entrypoint:` drops the
    // image's command.
    let (entrypoint, entrypoint_known) = match &s.entrypoint {
        Some(e) => (e.clone(), true),
        None => (config.entrypoint.clone().unwrap_or_default(), base.entrypoint_known),
    };
    let (command, command_known) = match (&s.command, &s.entrypoint) {
        (Some(c), _) => (c.clone(), true),
        (None, Some(_)) => (Vec::new(), true),
        (None, None) => (config.cmd.clone().unwrap_or_default(), base.cmd_known),
    };
    let source_at = match &s.source {
        Source::Image { at, .. } => *at,
        Source::Build(b) => b.at,
        Source::None => s.at,
    };
    let argv: Vec<String> = entrypoint.iter().chain(&command).cloned().collect();
    let cmd = if !entrypoint_known && !command_known {
        if base.unknown.as_ref().is_some_and(|(i, _)| !i.is_empty()) {
            r.left_out(
                source_at,
                &s.path,
                format!("the command the container runs is not known: {why_unknown}"),
            );
        } else {
            r.left_out(s.at, &s.path, "the service has no image to run a command from");
        }
        None
    } else if !entrypoint_known {
        r.left_out(
            source_at,
            &s.path,
            format!(
                "the entrypoint of {image} is not known, so the daemon runs the command alone ({}): {why_unknown}",
                argv.join(" ")
            ),
        );
        Some(argv)
    } else if !command_known && s.command.is_none() {
        r.left_out(
            source_at,
            &s.path,
            format!(
                "the command of {image} is not known, so the daemon runs the entrypoint alone ({}): {why_unknown}",
                argv.join(" ")
            ),
        );
        Some(argv)
    } else if argv.is_empty() || argv[0].is_empty() {
        r.left_out(s.at, &s.path, "the service has no command to run (no entrypoint and no command)");
        None
    } else {
        Some(argv)
    };
    if cmd.is_some()
        && let Some((image, line)) = &base.unknown
        && !image.is_empty()
        && entrypoint_known
        && command_known
    {
        // the command is known, the rest of the image's configuration is not
        let at = match &s.source {
            Source::Build(b) if *line > 0 => format!(" ({}, line {line})", b.dockerfile_path),
            _ => String::new(),
        };
        r.note(
            source_at,
            &s.path,
            format!(
                "the user, folder and environment of {image}{at} are not known: the daemon runs as root in /, \
                 with the environment the compose file gives; pull the image and import again to have them"
            ),
        );
    }

    let user = match &s.user {
        Some((user, at)) => {
            let (name, group) = user.split_once(':').map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
            if let Some(group) = group {
                r.note(
                    *at,
                    &format!("{}.user", s.path),
                    format!("the daemon runs as {name} with that user's groups, not with the group {group}"),
                );
            }
            if name.parse::<u32>().is_ok() {
                r.note(
                    *at,
                    &format!("{}.user", s.path),
                    format!("drover looks the user up: uid {name} must be in the image's /etc/passwd"),
                );
            }
            Some(name.to_string()).filter(|n| !n.is_empty())
        }
        None => config
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .map(|u| u.split(':').next().unwrap_or_default().to_string()),
    };
    let user = user.filter(|u| u != "root" && u != "0");

    let (cwd, make_cwd) = match &s.working_dir {
        Some(dir) => (Some(dir.clone()), config.working_dir.as_deref() != Some(dir.as_str())),
        None => (config.working_dir.clone().filter(|d| !d.is_empty() && d != "/"), false),
    };

    let mut env = config.env_pairs();
    for (name, value) in &s.env {
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.clone()));
    }

    let stop_signal = match s.stop_signal.clone().or_else(|| config.stop_signal.clone()) {
        Some(signal) => {
            let bare = signal.trim().trim_start_matches("SIG").to_ascii_uppercase();
            if bare == "TERM" {
                None
            } else if SIGNALS.contains(&bare.as_str()) {
                Some(format!("SIG{bare}"))
            } else {
                r.left_out(
                    s.at,
                    &s.path,
                    format!(
                        "the stop signal {signal} is not one drover sends ({}): the daemon gets SIGTERM",
                        SIGNALS.join(", ")
                    ),
                );
                None
            }
        }
        None => None,
    };

    Daemon {
        cmd,
        user,
        cwd,
        make_cwd,
        env,
        health: health(r, s, config),
        stop_signal,
        stop_timeout_ms: s.stop_timeout_ms,
        restart: s.restart,
    }
}

/// The health check: Compose's `healthcheck:` over the image's `HEALTHCHECK`.
fn health(r: &mut Reader, s: &Service, config: &ImageConfig) -> Option<Check> {
    let image = config.healthcheck.clone().unwrap_or_default();
    let compose = s.health.clone().unwrap_or_default();
    if compose.disabled {
        return None;
    }
    let test = compose.test.clone().filter(|t| !t.is_empty()).unwrap_or(image.test.clone());
    let path = format!("{}.healthcheck", s.path);
    let argv = match test.split_first() {
        None => {
            if s.health.is_some() {
                r.left_out(compose.at, &path, "the health check has no `test`: the daemon has none");
            }
            return None;
        }
        Some((kind, _)) if kind == "NONE" => return None,
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, [line])) if kind == "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        Some(_) => {
            r.left_out(
                compose.at,
                &path,
                format!("expected a test such as [\"CMD\", \"curl\", \"-f\", \"http://localhost\"], got {test:?}: the daemon has no check"),
            );
            return None;
        }
    };
    let ns_ms = |ns: u64| (ns > 0).then_some(ns / 1_000_000);
    let interval_ms =
        compose.interval_ms.or(ns_ms(image.interval)).filter(|ms| *ms > 0).unwrap_or(INTERVAL_MS);
    let timeout_ms = compose.timeout_ms.or(ns_ms(image.timeout)).filter(|ms| *ms > 0).unwrap_or(TIMEOUT_MS);
    // 0 is the default, for Docker as for Compose
    let retries = compose
        .retries
        .filter(|r| *r > 0)
        .or((image.retries > 0).then_some(image.retries))
        .unwrap_or(RETRIES);
    let start_period = compose.start_period_ms.or(ns_ms(image.start_period)).unwrap_or(0);
    let grace = interval_ms.saturating_mul(u64::from(retries));
    if start_period > grace {
        r.note(
            compose.at,
            &path,
            format!(
                "drover counts a daemon that has not answered yet as unhealthy after interval × retries ({}), \
                 not after start_period ({}): raise retries if it starts slowly",
                crate::units::duration_text(grace),
                crate::units::duration_text(start_period)
            ),
        );
    }
    Some(Check { argv, interval_ms, timeout_ms, retries })
}

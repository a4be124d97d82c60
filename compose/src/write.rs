//! The files: `fleet.yaml`, and per service `roles/<role>.yaml`, `states/<fleet>/<role>.yaml`
//! and `images/<image>/Dockerfile`, written for a person to review.

use std::fmt::Write as _;

use crate::dockerfile::{self, onto_base};
use crate::model::{Service, Source};
use crate::units::{duration_text, size_text};
use crate::yaml::{comment, flow_list, scalar};
use crate::{Copy, VERSION};

/// What every image definition says of how drover builds it.
const RULES: &str = "drover builds every image on its Debian base (images/base) with drover-minion as the\n\
                     entrypoint (docs/images.md): the image's files go onto the base, and its entrypoint and\n\
                     command run as the daemon of the role's state, with its user, folder and environment.\n\
                     The image must use the GNU C library, as new as the base's: drover-minion does not run\n\
                     on musl (Alpine).";

/// Where an image keeps the project's folders it copies (bind mounts).
pub(crate) const MOUNTS_DIR: &str = "compose-mounts";

pub(crate) fn fleet_file(compose: &str, fleet: &str, services: &[Service]) -> String {
    let mut out = comment(&format!(
        "The fleet of {compose}, made by `drover import compose`: one role per service, each with its\n\
         image (images/<image>/), role file (roles/) and state (states/{fleet}/). Build the images, review\n\
         and commit, then `drover up` (docs/from-compose.md)."
    ));
    let _ = writeln!(out, "fleet: {fleet}");
    let _ = writeln!(out, "version: {}", scalar(VERSION));
    if services.is_empty() {
        out.push_str("roles: {}\n");
        return out;
    }
    out.push_str("roles:\n");
    for s in services {
        let _ = writeln!(out, "  {}:", s.role);
        let _ = writeln!(out, "    image: {}", s.image);
        if s.replicas != 1 {
            let _ = writeln!(out, "    replicas: {}", s.replicas);
        }
        if !s.volumes.is_empty() {
            let volumes: Vec<&str> = s.volumes.iter().map(|v| v.target.as_str()).collect();
            let _ = writeln!(out, "    volumes: {}", flow_list(&volumes));
        }
        if !s.ports.is_empty() {
            let ports: Vec<String> = s
                .ports
                .iter()
                .map(|(p, _)| serde_json::to_string(&p.to_string()).expect("a string"))
                .collect();
            let _ = writeln!(out, "    ports: [{}]", ports.join(", "));
        }
        let mut resources = Vec::new();
        if let Some(cpus) = s.resources.cpus {
            resources.push(format!("cpus: {cpus}"));
        }
        if let Some(memory) = s.resources.memory {
            resources.push(format!("memory: {}", size_text(memory)));
        }
        if !resources.is_empty() {
            let _ = writeln!(out, "    resources: {{{}}}", resources.join(", "));
        }
        if !s.update.is_empty() {
            let mut update = Vec::new();
            if let Some(batch) = &s.update.batch {
                let written = if batch.parse::<u32>().is_ok() { batch.clone() } else { scalar(batch) };
                update.push(format!("batch: {written}"));
            }
            if let Some((order, _)) = &s.update.order {
                update.push(format!("order: {order}"));
            }
            if let Some(ms) = s.update.min_healthy {
                update.push(format!("min_healthy: {}", duration_text(ms)));
            }
            if let Some(ratio) = s.update.max_failure_ratio {
                update.push(format!("max_failure_ratio: {ratio}"));
            }
            if let Some(action) = s.update.on_failure {
                update.push(format!("on_failure: {action}"));
            }
            let _ = writeln!(out, "    update: {{{}}}", update.join(", "));
        }
        if !s.aliases.is_empty() {
            let aliases: Vec<&str> = s.aliases.iter().map(|(a, _)| a.as_str()).collect();
            let _ = writeln!(out, "    aliases: {}", flow_list(&aliases));
        }
    }
    out
}

pub(crate) fn role_file(compose: &str, fleet: &str, s: &Service) -> String {
    let mut out = comment(&format!("{} of {compose}, made by `drover import compose`", s.path));
    let _ = writeln!(out, "description: {}", scalar(&format!("the service {} of {compose}", s.name)));
    let _ = writeln!(out, "states: [{fleet}.{}]", s.role);
    if !s.requires.is_empty() {
        let roles: Vec<&str> = s.requires.iter().map(|(r, _)| r.as_str()).collect();
        let _ = writeln!(out, "requires: {}", flow_list(&roles));
    }
    out
}

/// The state: the files the service mounted, the folders it needs, and its daemon.
pub(crate) fn state_file(compose: &str, s: &Service) -> String {
    let d = &s.daemon;
    let mut body = String::new();
    let mut watch = Vec::new();
    let mut require = Vec::new();
    for f in &s.files {
        let _ = writeln!(body, "{}:\n  file.managed:", scalar(&f.target));
        let _ = writeln!(body, "    - source: {}", scalar(&f.source));
        if let Some(mode) = &f.mode {
            let _ = writeln!(body, "    - mode: \"{mode}\"");
        }
        if let Some(user) = &f.user {
            let _ = writeln!(body, "    - user: {}", scalar(user));
        }
        if let Some(group) = &f.group {
            let _ = writeln!(body, "    - group: {}", scalar(group));
        }
        body.push_str("    - makedirs: true\n");
        watch.push(f.target.clone());
    }
    let mut dirs: Vec<&str> = s.dirs.iter().map(String::as_str).collect();
    if d.make_cwd
        && let Some(cwd) = &d.cwd
        && !dirs.contains(&cwd.as_str())
    {
        dirs.push(cwd);
    }
    for dir in dirs {
        let _ = writeln!(body, "{}:\n  file.directory:\n    - makedirs: true", scalar(dir));
        require.push(dir.to_string());
    }
    let _ = writeln!(body, "{}:\n  daemon.running:", s.role);
    match &d.cmd {
        Some(cmd) => {
            let _ = writeln!(body, "    - cmd: {}", flow_list(cmd));
        }
        None => {
            let line = format!(
                "echo '{}: the command is not known (see the report of drover import compose); write it in this \
                 state' >&2; exit 1",
                s.path
            );
            body.push_str("    # TODO: the service's command is not known: write it here\n");
            let _ = writeln!(body, "    - cmd: {}", flow_list(&["/bin/sh", "-c", &line]));
        }
    }
    if let Some(user) = &d.user {
        let _ = writeln!(body, "    - user: {}", scalar(user));
    }
    if let Some(cwd) = &d.cwd {
        let _ = writeln!(body, "    - cwd: {}", scalar(cwd));
    }
    if !d.env.is_empty() {
        body.push_str("    - env:\n");
        for (name, value) in &d.env {
            let _ = writeln!(body, "        {}: {}", scalar(name), scalar(value));
        }
    }
    if let Some(restart) = d.restart {
        let _ = writeln!(body, "    - restart: {restart}");
    }
    if let Some(signal) = &d.stop_signal {
        let _ = writeln!(body, "    - stop_signal: {signal}");
    }
    if let Some(ms) = d.stop_timeout_ms {
        let _ = writeln!(body, "    - stop_timeout: {}", duration_text(ms));
    }
    if let Some(check) = &d.health {
        body.push_str("    - health:\n");
        let _ = writeln!(body, "        exec: {}", flow_list(&check.argv));
        let _ = writeln!(body, "        interval: {}", duration_text(check.interval_ms));
        let _ = writeln!(body, "        timeout: {}", duration_text(check.timeout_ms));
        let _ = writeln!(body, "        retries: {}", check.retries);
    }
    for (kind, ids) in [("watch", &watch), ("require", &require)] {
        if !ids.is_empty() {
            let _ = writeln!(body, "    - {kind}:");
            for id in ids.iter() {
                let _ = writeln!(body, "      - file: {}", scalar(id));
            }
        }
    }
    let mut out = comment(&format!(
        "{} of {compose}, made by `drover import compose`.\n\
         The command its container ran is a daemon here: a drover container's entrypoint is\n\
         drover-minion, which runs it.",
        s.path
    ));
    out.push_str(&tera_literal(&body));
    out
}

/// `text` as a Tera template that renders to `text` (a state file is one): in a raw block
/// when it has `{{`, `{%` or `{#`, each `{%` of it written by an expression, so that no
/// `{% endraw %}` in it can end the block.
pub(crate) fn tera_literal(text: &str) -> String {
    if !["{{", "{%", "{#"].iter().any(|t| text.contains(t)) {
        return text.to_string();
    }
    let escaped = text.replace("{%", "{% endraw %}{{ \"{%\" }}{% raw %}");
    format!("{{% raw %}}\n{escaped}{{% endraw %}}\n")
}

/// A note on an image's Dockerfile: the file, the line, what.
pub(crate) type ImageNote = (String, usize, String);

/// `images/<image>/Dockerfile`, and the folders to copy into `images/<image>/`.
pub(crate) fn image(compose: &str, s: &Service) -> (String, Vec<Copy>, Vec<ImageNote>) {
    let folder = format!("images/{}", s.image);
    let mut copies = Vec::new();
    let mut tail = String::new();
    for (from, target) in &s.copies {
        let inside = if from.is_empty() { MOUNTS_DIR.to_string() } else { format!("{MOUNTS_DIR}/{from}") };
        copies.push(Copy { from: from.clone(), to: format!("{folder}/{inside}") });
        let _ = writeln!(tail, "COPY {inside} {target}");
    }
    let build = format!("drover image build {folder} --tag {}:{VERSION}", s.image);
    let mut notes = Vec::new();
    let text = match (&s.source, &s.dockerfile) {
        (Source::Build(b), Some((file, target))) => {
            let context = if b.context.is_empty() { "." } else { b.context.as_str() };
            copies.insert(0, Copy { from: b.context.clone(), to: folder.clone() });
            let header = comment(&format!(
                "{} of {compose}, made by `drover import compose`:\n\
                 the build context {context}/ copied here, the stages of {} as they were, then the base.\n\
                 Build it with: {build}\n\n{RULES}\n\
                 drover pulls nothing: the images these stages start from must be on the master's Docker\n\
                 engine, or the engine must be able to pull them.\n",
                s.path, b.dockerfile_path
            ));
            let (text, renamed, unset) = dockerfile::rebuild(file, *target, &b.args, &header, &tail);
            if renamed {
                let line = file
                    .stages
                    .iter()
                    .find(|st| st.name.as_deref() == Some("base"))
                    .map_or(0, |st| st.from.line);
                notes.push((
                    b.dockerfile_path.clone(),
                    line,
                    format!(
                        "the stage `base` is `{}` in {folder}/Dockerfile: there, `FROM base` is drover's base image",
                        dockerfile::RENAMED_BASE
                    ),
                ));
            }
            for line in unset {
                notes.push((
                    b.dockerfile_path.clone(),
                    line,
                    format!(
                        "this ARG spans several lines: set its build argument by hand in {folder}/Dockerfile"
                    ),
                ));
            }
            text
        }
        (Source::Image { reference, .. }, _) => {
            let mut text = comment(&format!(
                "{} of {compose}, made by `drover import compose`.\n\
                 Build it with: {build}\n\n{RULES}\n\
                 drover pulls nothing: the master's Docker engine must have {reference} (`docker pull\n\
                 {reference}` there, or `docker load` it), or be able to pull it from its registry.",
                s.path
            ));
            let _ = writeln!(text, "FROM {reference} AS service\n");
            text.push_str(&onto_base("service"));
            text.push_str(&tail);
            text
        }
        _ => {
            let mut text = comment(&format!(
                "{} of {compose}, made by `drover import compose`: the image could not be made from the\n\
                 compose file (see the report); write its stages here, ending on the base.\n\
                 Build it with: {build}",
                s.path
            ));
            text.push_str("FROM base\n");
            text.push_str(&tail);
            text
        }
    };
    (text, copies, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tera_renders_the_text_back() {
        let ctx = render::Context::default();
        for text in [
            "plain: text\n",
            "a: \"{{ x }}\"\n",
            "b: \"{% raw %} and {% endraw %} and {%- endraw -%}\"\n",
            "c: \"{# not a comment #} {%\"\n",
            "d: \"{{.Name}} {%endraw%}}\"\n",
        ] {
            let template = tera_literal(text);
            let rendered = render::render_source("states/t/t.yaml", &template, &ctx)
                .unwrap_or_else(|e| panic!("{text:?} as {template:?}: {e:?}"));
            assert_eq!(rendered.trim_matches('\n'), text.trim_end_matches('\n'), "{template}");
        }
    }
}

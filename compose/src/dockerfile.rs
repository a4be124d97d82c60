//! A service's Dockerfile (its `build:`): what image configuration its stage gives the
//! container (so the daemon can run the same command, as the same user, in the same folder,
//! with the same environment), and the Dockerfile drover builds instead: the same stages,
//! then `FROM base` with the service's stage copied onto it (drover's image build adds the
//! minion as the entrypoint, see docs/images.md).

use std::collections::BTreeMap;

use crate::image::{HealthConfig, ImageConfig, Reference};
use crate::sources::Sources;
use crate::units::duration_ms;

/// Docker's `PATH` when an image sets none.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One instruction, its continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instruction {
    /// 1-based lines of its first and last physical line.
    pub(crate) line: usize,
    pub(crate) last: usize,
    /// Upper case: `FROM`, `ENV`.
    pub(crate) keyword: String,
    /// What follows the keyword, continuation lines joined with a space.
    pub(crate) args: String,
}

/// A stage: its `FROM` and its instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stage {
    pub(crate) from: Instruction,
    /// The image or earlier stage it starts from, with build arguments substituted.
    pub(crate) image: String,
    /// `AS name`, lowercase.
    pub(crate) name: Option<String>,
    pub(crate) body: Vec<Instruction>,
}

/// A Dockerfile, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dockerfile {
    /// The parser directives at its top (`# syntax=…`, `# escape=…`), as lines.
    pub(crate) directives: Vec<String>,
    /// `ARG`s before the first `FROM`.
    pub(crate) global_args: Vec<Instruction>,
    pub(crate) stages: Vec<Stage>,
    pub(crate) lines: Vec<String>,
}

/// A problem with its 1-based line.
pub(crate) type LineError = (usize, String);

impl Dockerfile {
    /// Reads `text`; build arguments (`args`, compose's `build.args`) fill `ARG`s in `FROM`.
    pub(crate) fn parse(text: &str, args: &BTreeMap<String, String>) -> Result<Dockerfile, LineError> {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut directives = Vec::new();
        let mut escape = '\\';
        for line in &lines {
            let Some(body) = line.trim().strip_prefix('#') else { break };
            let Some((key, value)) = body.split_once('=') else { break };
            let key = key.trim().to_ascii_lowercase();
            if !matches!(key.as_str(), "syntax" | "escape" | "check") {
                break;
            }
            if key == "escape" {
                escape = value.trim().chars().next().unwrap_or('\\');
            }
            directives.push(line.clone());
        }
        let mut instructions = Vec::new();
        let mut current: Option<Instruction> = None;
        for (i, line) in lines.iter().enumerate().skip(directives.len()) {
            let n = i + 1;
            let t = line.trim();
            if t.starts_with('#') || (t.is_empty() && current.is_none()) {
                continue; // a comment, also inside a continued instruction
            }
            let (body, continued) = match t.strip_suffix(escape) {
                Some(body) => (body.trim_end(), true),
                None => (t, false),
            };
            match &mut current {
                Some(ins) => {
                    if !body.is_empty() {
                        if !ins.args.is_empty() {
                            ins.args.push(' ');
                        }
                        ins.args.push_str(body.trim_start());
                    }
                    ins.last = n;
                }
                None => {
                    let (keyword, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                    current = Some(Instruction {
                        line: n,
                        last: n,
                        keyword: keyword.to_ascii_uppercase(),
                        args: args.trim().to_string(),
                    });
                }
            }
            if !continued && let Some(ins) = current.take() {
                instructions.push(ins);
            }
        }
        if let Some(ins) = current {
            return Err((ins.line, format!("the Dockerfile ends inside a continued {} line", ins.keyword)));
        }
        let mut global_args = Vec::new();
        let mut global: BTreeMap<String, String> = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for ins in instructions {
            if ins.keyword == "FROM" {
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                let words: Vec<&str> = words.into_iter().skip_while(|w| w.starts_with("--")).collect();
                let (image, name) = match words.as_slice() {
                    [image] => (*image, None),
                    [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        (*image, Some(name.to_ascii_lowercase()))
                    }
                    _ => {
                        return Err((
                            ins.line,
                            format!("expected FROM IMAGE [AS NAME], got `FROM {}`", ins.args),
                        ));
                    }
                };
                let image = substitute(image, &|v| global.get(v).cloned());
                stages.push(Stage { from: ins, image, name, body: Vec::new() });
            } else if let Some(stage) = stages.last_mut() {
                stage.body.push(ins);
            } else if ins.keyword == "ARG" {
                for (name, default) in arg_names(&ins.args) {
                    let value = args.get(&name).cloned().or(default);
                    if let Some(value) = value {
                        global.insert(name, value);
                    }
                }
                global_args.push(ins);
            } else {
                return Err((ins.line, format!("expected FROM before {}", ins.keyword)));
            }
        }
        if stages.is_empty() {
            return Err((1, "the Dockerfile has no FROM line".into()));
        }
        Ok(Dockerfile { directives, global_args, stages, lines })
    }

    /// The stage named `target` (compose's `build.target`), or the last.
    pub(crate) fn target(&self, target: Option<&str>) -> Option<usize> {
        match target {
            None => Some(self.stages.len() - 1),
            Some(t) => self.stages.iter().position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase())),
        }
    }

    /// The stage `image` names, when it names an earlier one (`FROM build`, `FROM 0`).
    fn stage_named(&self, image: &str, before: usize) -> Option<usize> {
        let lower = image.to_ascii_lowercase();
        self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(&lower))
            .or_else(|| image.parse::<usize>().ok().filter(|i| *i < before))
    }

    /// The configuration stage `index` gives a container, with what could not be known.
    pub(crate) fn config(
        &self,
        index: usize,
        args: &BTreeMap<String, String>,
        sources: &dyn Sources,
    ) -> Resolved {
        let stage = &self.stages[index];
        let mut resolved = match self.stage_named(&stage.image, index) {
            Some(parent) => self.config(parent, args, sources),
            None if stage.image.eq_ignore_ascii_case("scratch") => Resolved::known(ImageConfig::default()),
            None => {
                let reference = Reference::parse(&stage.image);
                let mut resolved = match sources.image(&stage.image) {
                    Some(config) => Resolved::known(config),
                    None => Resolved::unknown(&stage.image, stage.from.line),
                };
                resolved.musl = reference
                    .musl()
                    .map(|(why, instead)| (stage.image.clone(), stage.from.line, why, instead));
                resolved
            }
        };
        let mut shell = vec!["/bin/sh".to_string(), "-c".to_string()];
        let mut stage_args: BTreeMap<String, String> = BTreeMap::new();
        let mut cmd_set = false;
        for ins in &stage.body {
            let config = &mut resolved.config;
            let lookup = |name: &str| -> Option<String> {
                config
                    .env_pairs()
                    .into_iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .or_else(|| stage_args.get(name).cloned())
                    .or_else(|| (name == "PATH").then(|| DEFAULT_PATH.to_string()))
            };
            match ins.keyword.as_str() {
                "ARG" => {
                    let globals = self.global_values(args);
                    for (name, default) in arg_names(&ins.args) {
                        let value =
                            args.get(&name).cloned().or(default).or_else(|| globals.get(&name).cloned());
                        if let Some(value) = value {
                            stage_args.insert(name, value);
                        }
                    }
                }
                "ENV" => {
                    let pairs = env_pairs(&ins.args, &lookup);
                    let mut env = config.env_pairs();
                    for (k, v) in pairs {
                        env.retain(|(name, _)| *name != k);
                        env.push((k, v));
                    }
                    config.env = Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
                }
                "WORKDIR" => {
                    let dir = substitute(ins.args.trim(), &lookup);
                    let base =
                        config.working_dir.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "/".into());
                    config.working_dir = Some(if dir.starts_with('/') {
                        dir
                    } else {
                        format!("{}/{dir}", base.trim_end_matches('/'))
                    });
                }
                "USER" => config.user = Some(substitute(ins.args.trim(), &lookup)),
                "STOPSIGNAL" => config.stop_signal = Some(substitute(ins.args.trim(), &lookup)),
                "SHELL" => {
                    if let Ok(words) = serde_json::from_str::<Vec<String>>(&ins.args) {
                        shell = words;
                    }
                }
                "ENTRYPOINT" => {
                    config.entrypoint = Some(command(&ins.args, &shell));
                    resolved.entrypoint_known = true;
                    if !cmd_set {
                        config.cmd = None;
                        resolved.cmd_known = true;
                    }
                }
                "CMD" => {
                    config.cmd = Some(command(&ins.args, &shell));
                    resolved.cmd_known = true;
                    cmd_set = true;
                }
                "HEALTHCHECK" => config.healthcheck = Some(healthcheck(&ins.args, &shell)),
                "VOLUME" => {
                    let paths: Vec<String> = match serde_json::from_str::<Vec<String>>(&ins.args) {
                        Ok(paths) => paths,
                        Err(_) => ins.args.split_whitespace().map(|p| substitute(p, &lookup)).collect(),
                    };
                    let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
                    for path in paths {
                        volumes.insert(path, serde_json::Value::Object(Default::default()));
                    }
                }
                _ => {}
            }
        }
        resolved
    }

    fn global_values(&self, args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        for ins in &self.global_args {
            for (name, default) in arg_names(&ins.args) {
                if let Some(value) = args.get(&name).cloned().or(default) {
                    values.insert(name, value);
                }
            }
        }
        values
    }
}

/// A stage's configuration, and what of it is not known: an image it builds on whose
/// configuration could not be read, and whether the entrypoint and command came through it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) config: ImageConfig,
    /// The image whose configuration is unknown, and the line of its `FROM`.
    pub(crate) unknown: Option<(String, usize)>,
    pub(crate) entrypoint_known: bool,
    pub(crate) cmd_known: bool,
    /// An image that cannot run drover-minion: the image, its `FROM` line, why, what instead.
    pub(crate) musl: Option<(String, usize, String, &'static str)>,
}

impl Resolved {
    pub(crate) fn known(config: ImageConfig) -> Resolved {
        Resolved { config, unknown: None, entrypoint_known: true, cmd_known: true, musl: None }
    }

    fn unknown(image: &str, line: usize) -> Resolved {
        Resolved {
            config: ImageConfig::default(),
            unknown: Some((image.to_string(), line)),
            entrypoint_known: false,
            cmd_known: false,
            musl: None,
        }
    }
}

/// `["a", "b"]` (exec form) or a command line for the shell (shell form).
fn command(args: &str, shell: &[String]) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(words) => words,
        Err(_) => shell.iter().cloned().chain([args.to_string()]).collect(),
    }
}

/// `HEALTHCHECK [--interval=…] … CMD …` or `HEALTHCHECK NONE`.
fn healthcheck(args: &str, shell: &[String]) -> HealthConfig {
    let mut health = HealthConfig::default();
    let mut rest = args.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let (word, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = word.split_once('=').unwrap_or((word, ""));
        let ns = || duration_ms(value).map_or(0, |ms| ms * 1_000_000);
        match name {
            "interval" => health.interval = ns(),
            "timeout" => health.timeout = ns(),
            "start-period" => health.start_period = ns(),
            "retries" => health.retries = value.parse().unwrap_or(0),
            _ => {}
        }
        rest = after.trim_start();
    }
    let (word, command_text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    health.test = if word.eq_ignore_ascii_case("NONE") {
        vec!["NONE".into()]
    } else {
        match serde_json::from_str::<Vec<String>>(command_text.trim()) {
            Ok(words) => std::iter::once("CMD".to_string()).chain(words).collect(),
            Err(_) if shell == ["/bin/sh", "-c"] => vec!["CMD-SHELL".into(), command_text.trim().to_string()],
            Err(_) => std::iter::once("CMD".to_string())
                .chain(shell.iter().cloned())
                .chain([command_text.trim().to_string()])
                .collect(),
        }
    };
    health
}

/// The names of an `ARG` line with their defaults: `ARG A B=1`.
pub(crate) fn arg_names(args: &str) -> Vec<(String, Option<String>)> {
    shlex::split(args)
        .unwrap_or_else(|| args.split_whitespace().map(str::to_string).collect())
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((name, default)) => (name.to_string(), Some(default.to_string())),
            None => (word, None),
        })
        .collect()
}

/// `ENV a=b c="d e"` or the old `ENV a b c` (one variable, the rest its value).
fn env_pairs(args: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let first = args.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let value = args[first.len()..].trim();
        return vec![(first.to_string(), substitute(value, lookup))];
    }
    let words = shlex::split(&substitute_outside_single_quotes(args, lookup))
        .unwrap_or_else(|| args.split_whitespace().map(str::to_string).collect());
    words.into_iter().filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

fn substitute_outside_single_quotes(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for (i, part) in text.split('\'').enumerate() {
        if i > 0 {
            out.push('\'');
        }
        if i % 2 == 0 {
            out.push_str(&substitute(part, lookup));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// A Dockerfile's variables in `text`: `$name`, `${name}`, `${name:-word}`, `${name:+word}`;
/// `\$` is a `$`; an unknown name is empty, as Docker has it.
pub(crate) fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let name_char = |c: char| c == '_' || c.is_ascii_alphanumeric();
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let Some(close) = chars[i..].iter().position(|c| *c == '}').map(|p| p + i) else {
                    out.extend(&chars[i..]);
                    break;
                };
                let inner: String = chars[i + 2..close].iter().collect();
                let (name, op, word) = match inner.find(":-").or_else(|| inner.find(":+")) {
                    Some(at) => (&inner[..at], &inner[at..at + 2], &inner[at + 2..]),
                    None => (inner.as_str(), "", ""),
                };
                let value = lookup(name).filter(|v| !v.is_empty());
                match (op, value) {
                    (":-", None) => out.push_str(word),
                    (":+", Some(_)) => out.push_str(word),
                    (":+", None) => {}
                    (_, value) => out.push_str(&value.unwrap_or_default()),
                }
                i = close + 1;
            }
            '$' if chars.get(i + 1).is_some_and(|c| name_char(*c)) => {
                let name: String = chars[i + 1..].iter().take_while(|c| name_char(**c)).collect();
                i += 1 + name.chars().count();
                out.push_str(&lookup(&name).unwrap_or_default());
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The name drover's Dockerfile gives a stage named `base`: `FROM base` is drover's base
/// image (docs/images.md), so a stage of that name would be mistaken for it.
pub(crate) const RENAMED_BASE: &str = "compose-base";

/// The Dockerfile drover builds for a service: `header` (comment lines), the stages of
/// `file` up to `target` (its `ARG` defaults set to compose's `build.args`, a stage named
/// `base` renamed), then `FROM base` with the target stage's files copied onto it, and
/// `extra` lines. Returns it, with whether a stage was renamed, and the `ARG` lines it could
/// not set (continued over several lines).
pub(crate) fn rebuild(
    file: &Dockerfile,
    target: usize,
    args: &BTreeMap<String, String>,
    header: &str,
    tail: &str,
) -> (String, bool, Vec<usize>) {
    let stage_named_base = file.stages.iter().any(|s| s.name.as_deref() == Some("base"));
    let end_line = file.stages.get(target + 1).map_or(file.lines.len(), |next| next.from.line - 1);
    let mut arg_lines: BTreeMap<usize, &Instruction> = BTreeMap::new();
    let mut unset = Vec::new();
    let all_args = file.global_args.iter().chain(file.stages[..=target].iter().flat_map(|s| s.body.iter()));
    for ins in all_args.filter(|i| i.keyword == "ARG") {
        if arg_names(&ins.args).iter().any(|(name, _)| args.contains_key(name)) {
            if ins.line == ins.last {
                arg_lines.insert(ins.line, ins);
            } else {
                unset.push(ins.line);
            }
        }
    }
    let from_lines: BTreeMap<usize, &Stage> = file.stages.iter().map(|s| (s.from.line, s)).collect();
    let mut out = String::new();
    for d in &file.directives {
        out.push_str(d);
        out.push('\n');
    }
    out.push_str(header);
    for (i, line) in file.lines.iter().enumerate().take(end_line).skip(file.directives.len()) {
        let n = i + 1;
        if let Some(ins) = arg_lines.get(&n) {
            let words: Vec<String> = arg_names(&ins.args)
                .into_iter()
                .map(|(name, default)| match args.get(&name).or(default.as_ref()) {
                    Some(value) => format!("{name}={}", quote_arg(value)),
                    None => name,
                })
                .collect();
            out.push_str(&format!("ARG {}\n", words.join(" ")));
            continue;
        }
        if stage_named_base && from_lines.contains_key(&n) {
            out.push_str(&rename_base_in_from(line));
            out.push('\n');
            continue;
        }
        if stage_named_base {
            out.push_str(&rename_base_in_copy(line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let stage = &file.stages[target];
    let from = match &stage.name {
        Some(name) if name == "base" => RENAMED_BASE.to_string(),
        Some(name) => name.clone(),
        None => target.to_string(),
    };
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&onto_base(&from));
    out.push_str(tail);
    (out, stage_named_base, unset)
}

/// The last stage of every Dockerfile drover builds for a service: the base, with the
/// files of the service's image (or stage) `from` copied onto it.
pub(crate) fn onto_base(from: &str) -> String {
    format!(
        "# drover's image build needs the last stage on its base image (it adds drover-minion as\n\
         # the entrypoint): the files of stage {from} go onto the base\n\
         FROM base\nCOPY --from={from} / /\n"
    )
}

/// A build argument's value for an `ARG` line: bare when it is one plain word.
fn quote_arg(value: &str) -> String {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@+,".contains(c)) {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// `FROM base AS x` → `FROM compose-base AS x`, `FROM img AS base` → `FROM img AS compose-base`.
fn rename_base_in_from(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let renamed: Vec<&str> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let is_image =
                i > 0 && !w.starts_with("--") && words[..i].iter().skip(1).all(|p| p.starts_with("--"));
            let is_name = i >= 2 && words[i - 1].eq_ignore_ascii_case("as");
            if (is_image || is_name) && w.eq_ignore_ascii_case("base") { RENAMED_BASE } else { w }
        })
        .collect();
    renamed.join(" ")
}

/// `COPY --from=base …` → `COPY --from=compose-base …`.
fn rename_base_in_copy(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    match lower.find("--from=base") {
        Some(at) if lower[at + 11..].starts_with([' ', '\t']) => {
            format!("{}--from={RENAMED_BASE}{}", &line[..at], &line[at + 11..])
        }
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Memory;

    fn parse(text: &str) -> Dockerfile {
        Dockerfile::parse(text, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn instructions_and_stages() {
        let file = parse(
            "# syntax=docker/dockerfile:1\n# a comment\nARG V=3.12\nFROM python:${V} AS Build\nRUN a \\\n  # inside\n  b\n\nFROM build\nCMD [\"x\"]\n",
        );
        assert_eq!(file.directives, ["# syntax=docker/dockerfile:1"]);
        assert_eq!(file.stages.len(), 2);
        assert_eq!(file.stages[0].image, "python:3.12");
        assert_eq!(file.stages[0].name.as_deref(), Some("build"));
        let run = &file.stages[0].body[0];
        assert_eq!((run.line, run.last, run.args.as_str()), (5, 7, "a b"));
        assert_eq!(file.target(None), Some(1));
        assert_eq!(file.target(Some("Build")), Some(0));
        assert_eq!(file.target(Some("nope")), None);
        assert!(Dockerfile::parse("RUN x\n", &BTreeMap::new()).is_err());
        assert!(Dockerfile::parse("FROM a \\\n", &BTreeMap::new()).is_err());
        assert!(Dockerfile::parse("# only\n", &BTreeMap::new()).is_err());
    }

    #[test]
    fn config_of_a_stage() {
        let mut sources = Memory::default();
        let parent = ImageConfig {
            entrypoint: Some(vec!["docker-entrypoint.sh".into()]),
            cmd: Some(vec!["node".into()]),
            env: Some(vec!["PATH=/usr/local/bin:/usr/bin".into(), "NODE_VERSION=20".into()]),
            ..ImageConfig::default()
        };
        sources.images.insert("node:20".into(), parent);
        let file = parse(
            "FROM node:20 AS deps\nENV APP=/app\nWORKDIR $APP\nWORKDIR src\nFROM deps\nARG MODE=dev\n\
             ENV PATH=/app/bin:$PATH MODE=${MODE} LIT='$x'\nUSER node:node\nCMD npm start\n\
             HEALTHCHECK --interval=5s --retries=2 CMD curl -f http://localhost/\nVOLUME /data /cache\n",
        );
        let args: BTreeMap<String, String> = [("MODE".to_string(), "prod".to_string())].into();
        let r = file.config(1, &args, &sources);
        assert!(r.unknown.is_none() && r.entrypoint_known && r.cmd_known);
        assert_eq!(r.config.entrypoint.as_deref().unwrap(), ["docker-entrypoint.sh"]);
        assert_eq!(r.config.cmd.as_deref().unwrap(), ["/bin/sh", "-c", "npm start"]);
        assert_eq!(r.config.working_dir.as_deref(), Some("/app/src"));
        assert_eq!(r.config.user.as_deref(), Some("node:node"));
        let env = r.config.env_pairs();
        assert!(env.contains(&("PATH".into(), "/app/bin:/usr/local/bin:/usr/bin".into())), "{env:?}");
        assert!(env.contains(&("MODE".into(), "prod".into())));
        assert!(env.contains(&("LIT".into(), "$x".into())));
        let health = r.config.healthcheck.unwrap();
        assert_eq!(health.test, ["CMD-SHELL", "curl -f http://localhost/"]);
        assert_eq!((health.interval, health.retries), (5_000_000_000, 2));
        assert_eq!(r.config.volumes.unwrap().keys().collect::<Vec<_>>(), ["/cache", "/data"]);

        // an ENTRYPOINT resets the inherited command; an unknown parent is said
        let file = parse("FROM python:3.12-alpine\nENTRYPOINT [\"app\"]\n");
        let r = file.config(0, &BTreeMap::new(), &sources);
        assert_eq!(r.unknown, Some(("python:3.12-alpine".into(), 1)));
        assert!(r.entrypoint_known && r.cmd_known && r.config.cmd.is_none());
        assert!(r.musl.is_some());
        let r = parse("FROM python:3.12\nCMD [\"app\"]\n").config(0, &BTreeMap::new(), &sources);
        assert!(!r.entrypoint_known && r.cmd_known);
        let r = parse("FROM scratch\nCOPY app /\nCMD [\"/app\"]\n").config(0, &BTreeMap::new(), &sources);
        assert!(r.unknown.is_none() && r.entrypoint_known && r.config.entrypoint.is_none());
    }

    #[test]
    fn rebuilt_with_the_base_last() {
        let file = parse(
            "# escape=\\\nARG V=1\nFROM golang:1.22 AS base\nRUN go build\nFROM base AS test\nRUN go test\n\
             FROM debian:bookworm-slim\nCOPY --from=base /app /app\nFROM debian AS unused\n",
        );
        let args: BTreeMap<String, String> = [("V".to_string(), "2 beta".to_string())].into();
        let (text, renamed, unset) = rebuild(&file, 2, &args, "# header\n", "COPY files/x /x\n");
        assert!(renamed && unset.is_empty());
        assert_eq!(
            text,
            "# escape=\\\n# header\nARG V=\"2 beta\"\nFROM golang:1.22 AS compose-base\nRUN go build\n\
             FROM compose-base AS test\nRUN go test\nFROM debian:bookworm-slim\nCOPY --from=compose-base /app /app\n\n\
             # drover's image build needs the last stage on its base image (it adds drover-minion as\n\
             # the entrypoint): the files of stage 2 go onto the base\n\
             FROM base\nCOPY --from=2 / /\nCOPY files/x /x\n"
        );
    }

    #[test]
    fn substitution() {
        let lookup = |n: &str| (n == "A").then(|| "a".to_string());
        assert_eq!(substitute("$A/${A}/${B:-b}/${A:+y}/${B:+n}/\\$A/$B.", &lookup), "a/a/b/y//$A/.");
    }
}

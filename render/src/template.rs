//! The Tera context of a minion and the rendering of templates (state files and the
//! `source` of `file.managed` with `template: tera`).
//!
//! Templates are self-contained: no `{% include %}`, `{% extends %}` or `{% import %}`,
//! since a minion fetches only the files its plan names. Nothing is HTML-escaped. Besides
//! Tera's built-ins there is a `json` filter, which writes a value as JSON (valid YAML too).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tera::ErrorKind;

use crate::diag::{Diagnostic, guard, lowercase_first};
use crate::role::{self, Role};

/// Rendered output larger than this is refused (a runaway loop in a template).
pub const MAX_OUTPUT: usize = 16 << 20;

/// Another minion, as templates see it in `peers.<role>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub id: String,
    pub address: String,
    #[serde(default)]
    pub grains: Map<String, Value>,
}

/// What the caller knows of the minion a plan is for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Minion {
    pub id: String,
    #[serde(default)]
    pub grains: Map<String, Value>,
    /// Per-minion pillar, merged over the pillar of its roles.
    #[serde(default)]
    pub pillar: Map<String, Value>,
    /// Role name → the minions that have it.
    #[serde(default)]
    pub peers: BTreeMap<String, Vec<Peer>>,
}

/// The variables of every template rendered for one minion: `id`, `grains`, `roles`,
/// `pillar`, `peers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub id: String,
    pub grains: Map<String, Value>,
    /// The minion's role names, in plan order (a role after the roles it `requires`).
    pub roles: Vec<String>,
    pub pillar: Map<String, Value>,
    pub peers: BTreeMap<String, Vec<Peer>>,
}

impl Context {
    /// The context of `minion` with `roles`. The pillar is the roles' pillars deep-merged in
    /// plan order (a later role wins on a conflict), then the minion's own pillar over them.
    pub fn new(minion: &Minion, roles: &[Role]) -> Context {
        let ordered = role::plan_order(roles);
        let mut pillar = Map::new();
        for role in &ordered {
            merge(&mut pillar, &role.pillar);
        }
        merge(&mut pillar, &minion.pillar);
        Context {
            id: minion.id.clone(),
            grains: minion.grains.clone(),
            roles: ordered.iter().map(|r| r.name.clone()).collect(),
            pillar,
            peers: minion.peers.clone(),
        }
    }
}

fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Render the `source` of a `file.managed` with `template: tera`: `path` is the resource's
/// source (`states/coins/worker.toml`, used in diagnostics), `contents` the file.
pub fn render_source(path: &str, contents: &str, ctx: &Context) -> Result<String, Vec<Diagnostic>> {
    render(path, contents, ctx)
}

/// Render `template` (the contents of `file`) against `ctx`.
pub(crate) fn render(file: &str, template: &str, ctx: &Context) -> Result<String, Vec<Diagnostic>> {
    guard(file, "rendering", || render_unguarded(file, template, ctx)).map_err(|d| vec![d])?
}

fn render_unguarded(file: &str, template: &str, ctx: &Context) -> Result<String, Vec<Diagnostic>> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.register_filter("json", |value: &tera::Value, _: tera::Kwargs, _: &tera::State| {
        serde_json::to_string(value).map_err(|e| tera::Error::message(format!("cannot write as JSON: {e}")))
    });
    tera.add_raw_template(file, template).map_err(|e| tera_diagnostics(file, &e))?;
    let context = tera::Context::from_serialize(ctx).map_err(|e| tera_diagnostics(file, &e))?;
    let mut out = Capped { buf: Vec::new(), over: false };
    if let Err(e) = tera.render_to(file, &context, &mut out) {
        if out.over {
            return Err(vec![Diagnostic::whole_file(
                file,
                format!("rendered output exceeds {} MiB; expected a bounded template", MAX_OUTPUT >> 20),
            )]);
        }
        return Err(tera_diagnostics(file, &e));
    }
    String::from_utf8(out.buf)
        .map_err(|_| vec![Diagnostic::whole_file(file, "rendered output is not UTF-8; expected text")])
}

/// Tera's errors carry their position (1-based line, 0-based column) and message, such as
/// "Field `password` is not defined. Available fields: bind, port".
fn tera_diagnostics(file: &str, err: &tera::Error) -> Vec<Diagnostic> {
    match err.kind() {
        ErrorKind::SyntaxError(report) | ErrorKind::RenderingError(report) => {
            let span = report.span();
            let col = if span.start_line == 0 { 0 } else { span.start_col + 1 };
            let mut message = lowercase_first(report.message());
            if message == "unexpected end of input" {
                message.push_str("; expected `}}`, `%}` or an `{% end… %}` closing what was opened");
            }
            vec![Diagnostic::new(file, span.start_line, col, message)]
        }
        // Unknown filters, functions, tests and templates come as reports in plain text.
        ErrorKind::Msg(text) => {
            let found = text_reports(file, text);
            if found.is_empty() { vec![Diagnostic::whole_file(file, lowercase_first(text))] } else { found }
        }
        other => vec![Diagnostic::whole_file(file, lowercase_first(&other.to_string()))],
    }
}

/// Parse Tera's text reports: `error: MESSAGE` then ` --> NAME:LINE:COL`.
fn text_reports(file: &str, text: &str) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(message) = line.strip_prefix("error: ") else { continue };
        let position = lines.peek().and_then(|next| next.trim_start().strip_prefix("--> ")).and_then(|at| {
            let mut parts = at.rsplitn(3, ':');
            let col = parts.next()?.trim().parse::<usize>().ok()?;
            let line = parts.next()?.trim().parse::<usize>().ok()?;
            Some((line, col))
        });
        let (line, col) = position.unwrap_or((0, 0));
        found.push(Diagnostic::new(file, line, col, lowercase_first(message)));
    }
    found
}

/// A buffer that refuses to grow past `MAX_OUTPUT`.
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            self.over = true;
            return Err(io::Error::other("rendered output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Context {
        let Value::Object(pillar) = json!({"bind": "0.0.0.0", "port": 8003}) else { unreachable!() };
        Context { id: "w1".into(), pillar, ..Context::default() }
    }

    #[test]
    fn renders_with_the_context_and_no_escaping() {
        let out = render("t.yaml", "{{ id }} <{{ pillar.bind }}> {{ pillar | json }}", &ctx()).unwrap();
        assert_eq!(out, r#"w1 <0.0.0.0> {"bind":"0.0.0.0","port":8003}"#);
    }

    #[test]
    fn undefined_field_names_position_and_available_fields() {
        let err = render("t.yaml", "a: 1\nb: {{ pillar.password }}\n", &ctx()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "t.yaml:2:14: field `password` is not defined. Available fields: bind, port"
        );
    }

    #[test]
    fn unknown_filter_and_syntax_errors_have_positions() {
        let err = render("t.yaml", "a: {{ id | nope }}\n", &ctx()).unwrap_err();
        assert_eq!(err[0].to_string(), "t.yaml:1:12: unknown filter `nope`");
        let err = render("t.yaml", "a: {% if id %}\n", &ctx()).unwrap_err();
        assert!(err[0].to_string().starts_with("t.yaml:2:1: unexpected end of input; expected"), "{err:?}");
        let err = render("t.yaml", "{% include \"other\" %}", &ctx()).unwrap_err();
        assert_eq!(err[0].to_string(), "t.yaml:1:12: unknown template `other`");
    }

    #[test]
    fn runaway_output_is_refused() {
        let big = "{% for i in range(end=100000) %}{% for j in range(end=100) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}";
        let err = render("t.yaml", big, &ctx()).unwrap_err();
        assert!(err[0].message.contains("exceeds 16 MiB"), "{err:?}");
    }

    #[test]
    fn pillar_merges_roles_then_minion() {
        let role = |name: &str, pillar: Value| Role {
            name: name.into(),
            pillar: pillar.as_object().unwrap().clone(),
            ..Role::default()
        };
        let roles =
            [role("a", json!({"db": {"host": "a", "port": 1}})), role("b", json!({"db": {"host": "b"}}))];
        let minion = Minion {
            id: "m".into(),
            pillar: json!({"db": {"port": 2}}).as_object().unwrap().clone(),
            ..Minion::default()
        };
        let ctx = Context::new(&minion, &roles);
        assert_eq!(Value::Object(ctx.pillar), json!({"db": {"host": "b", "port": 2}}));
        assert_eq!(ctx.roles, ["a", "b"]);
    }
}

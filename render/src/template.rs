//! The Tera context of a minion and the rendering of templates (state files and the
//! `source` of `file.managed` with `template: tera`).
//!
//! Templates are self-contained: no `{% include %}`, `{% extends %}` or `{% import %}`,
//! since a minion fetches only the files its plan names. Nothing is HTML-escaped. Besides
//! Tera's built-ins there are the helpers Salt's states lean on (`helpers`: the `json` and
//! `yaml` filters, `pillar_get` and `grains_get`). Every render runs within a budget of loop
//! iterations and time (`budget`).

mod helpers;
mod peers;

pub use peers::peer_reads;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tera::ErrorKind;

use crate::budget::{self, Budget, Instrumented, Meter};
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

/// Render `template` (the contents of `file`) against `ctx`, within the default [`Budget`].
pub(crate) fn render(file: &str, template: &str, ctx: &Context) -> Result<String, Vec<Diagnostic>> {
    render_within(file, template, ctx, Budget::default())
}

fn render_within(
    file: &str,
    template: &str,
    ctx: &Context,
    budget: Budget,
) -> Result<String, Vec<Diagnostic>> {
    guard(file, "rendering", || render_unguarded(file, template, ctx, budget)).map_err(|d| vec![d])?
}

fn render_unguarded(
    file: &str,
    template: &str,
    ctx: &Context,
    budget: Budget,
) -> Result<String, Vec<Diagnostic>> {
    let meter = Arc::new(Meter::start(budget));
    let instrumented = budget::instrument(template);
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    helpers::register(&mut tera, &ctx.pillar, &ctx.grains);
    let m = Arc::clone(&meter);
    tera.register_function(budget::TICK, move |_: tera::Kwargs, _: &tera::State| {
        m.tick().map(|()| "").map_err(|why| tera::Error::message(why.message()))
    });
    let m = Arc::clone(&meter);
    tera.register_function(budget::EACH, move |_: tera::Kwargs, _: &tera::State| {
        m.tick().map(|()| true).map_err(|why| tera::Error::message(why.message()))
    });
    let diagnostics = |e: &tera::Error| tera_diagnostics(file, e, &instrumented);
    tera.add_raw_template(file, &instrumented.text).map_err(|e| diagnostics(&e))?;
    let context = tera::Context::from_serialize(ctx).map_err(|e| diagnostics(&e))?;
    let mut out = Capped { buf: Vec::new(), over: false };
    if let Err(e) = tera.render_to(file, &context, &mut out) {
        if out.over {
            return Err(vec![Diagnostic::whole_file(
                file,
                format!("rendered output exceeds {} MiB; expected a bounded template", MAX_OUTPUT >> 20),
            )]);
        }
        if let Some(why) = meter.exceeded() {
            // the tick that stopped it is in the loop's body: Tera points at it
            let mut found = diagnostics(&e);
            found.truncate(1);
            let (line, col) = found.first().map_or((0, 0), |d| (d.line, d.col));
            return Err(vec![Diagnostic::new(file, line, col, why.message())]);
        }
        return Err(diagnostics(&e));
    }
    String::from_utf8(out.buf)
        .map_err(|_| vec![Diagnostic::whole_file(file, "rendered output is not UTF-8; expected text")])
}

/// Tera's errors carry their position (1-based line, 0-based column, in the instrumented
/// text) and message, such as "Field `password` is not defined. Available fields: bind, port".
fn tera_diagnostics(file: &str, err: &tera::Error, instrumented: &Instrumented) -> Vec<Diagnostic> {
    match err.kind() {
        ErrorKind::SyntaxError(report) | ErrorKind::RenderingError(report) => {
            let span = report.span();
            let (line, col) = match span.start_line {
                0 => (0, 0),
                line => instrumented.position(line, span.start_col),
            };
            let mut message = lowercase_first(report.message());
            if message == "unexpected end of input" {
                message.push_str("; expected `}}`, `%}` or an `{% end… %}` closing what was opened");
            }
            if message.ends_with("but expected identifier.") && after_call_paren(instrumented, span) {
                message.pop();
                message.push_str(NAMED_ARGUMENTS);
            }
            vec![Diagnostic::new(file, line, col, message)]
        }
        // Unknown filters, functions, tests and templates come as reports in plain text.
        ErrorKind::Msg(text) => {
            let found = text_reports(file, text, instrumented);
            if found.is_empty() { vec![Diagnostic::whole_file(file, lowercase_first(text))] } else { found }
        }
        other => vec![Diagnostic::whole_file(file, lowercase_first(&other.to_string()))],
    }
}

/// What a Jinja habit (`default("x")`, `pillar_get("a:b")`) gets told.
const NAMED_ARGUMENTS: &str = "; Tera's filters and functions take named arguments: \
    `default(value=\"x\")`, `join(sep=\",\")`, `pillar_get(key=\"a:b\", default=\"x\")`";

/// Whether an error's span follows a `(` or `,` in the instrumented text: an argument
/// without a name.
fn after_call_paren(instrumented: &Instrumented, span: &tera::Span) -> bool {
    let Some(line) = span.start_line.checked_sub(1).and_then(|i| instrumented.text.lines().nth(i)) else {
        return false;
    };
    let before: String = line.chars().take(span.start_col).collect();
    before.trim_end().ends_with(['(', ','])
}

/// Parse Tera's text reports: `error: MESSAGE` then ` --> NAME:LINE:COL` (1-based).
fn text_reports(file: &str, text: &str, instrumented: &Instrumented) -> Vec<Diagnostic> {
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
        let (line, col) = match position {
            Some((line, col)) if line > 0 && col > 0 => instrumented.position(line, col - 1),
            Some((line, _)) => (line, 0),
            None => (0, 0),
        };
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
    use std::time::Duration;

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

    /// Renders with Tera as it is: no budget, no instrumentation.
    fn plain(template: &str, ctx: &Context) -> String {
        let mut tera = tera::Tera::new();
        tera.autoescape_on(Vec::<&str>::new());
        tera.add_raw_template("t", template).unwrap();
        tera.render("t", &tera::Context::from_serialize(ctx).unwrap()).unwrap()
    }

    #[test]
    fn instrumented_templates_render_as_written() {
        let mut ctx = ctx();
        ctx.pillar.insert("list".into(), json!([1, 2, 3]));
        ctx.pillar.insert("map".into(), json!({"a": 1, "b": 2}));
        let templates = [
            "{% for x in pillar.list %}{{ x }},{% endfor %}",
            "a:\n{% for x in pillar.list -%}\n  - {{ x }}\n{% endfor -%}\nb: 1\n",
            "{%- for k, v in pillar.map -%}\n {{ k }}={{ v }} {% endfor %}|",
            "{% for x in [] %}x{% else %}none{% endfor %}",
            "{% for x in pillar.list %}{{ loop.index }}{% if x == 2 %}{% break %}{% endif %}{% endfor %}",
            "{{ [x * 2 for x in pillar.list] }} {{ [x for x in pillar.list if x > 1] | join(sep=\",\") }}",
            "{{ [[y for y in range(end=x)] for x in pillar.list if x != 2] }}",
            "{% set s %}{% for x in pillar.list %}[{{ x }}]{% endfor %}{% endset %}{{ s }}",
            "{% component c(v) %}<{{ v }}>{% endcomponent c %}{% for x in pillar.list %}{{<c v={x}/>}}{% endfor %}",
            "{% raw %}{% for x in l %}{% endraw %}{# {% for %} #}{{ \"{% for x in l %}\" }}",
        ];
        for t in templates {
            assert_eq!(render("t", t, &ctx).unwrap(), plain(t, &ctx), "{t}");
        }
    }

    #[test]
    fn runaway_loops_are_stopped_at_the_loop_that_ran_over() {
        let budget = Budget { iterations: 10_000, time: Duration::from_secs(3600) };
        let stopped = "rendering stopped in this loop after 10000 iterations in all; \
                       expected loops that end sooner (is a `range` or a list too large?)";
        let cases = [
            // the issue's example: empty loops in loops
            (
                "{% for a in range(end=100000) %}{% for b in range(end=100000) %}{% endfor %}{% endfor %}",
                1,
                36,
            ),
            // one list, looped over in itself
            (
                "{% set l = range(end=1000) %}\n{% for a in l %}\n  {% for b in l %}{% endfor %}{% endfor %}",
                3,
                6,
            ),
            // comprehensions in a comprehension
            ("x: {{ [[b for b in range(end=1000)] for a in range(end=1000)] | length }}", 1, 11),
            // a component calling itself three times, 20 deep
            (
                "{% component r(n) %}{% if n > 0 %}{{<r n={n - 1}/>}}{{<r n={n - 1}/>}}{{<r n={n - 1}/>}}{% endif %}{% endcomponent r %}{{<r n={19}/>}}",
                1,
                4,
            ),
        ];
        for (template, line, col) in cases {
            let err = render_within("states/x.yaml", template, &ctx(), budget).unwrap_err();
            assert_eq!(err, [Diagnostic::new("states/x.yaml", line, col, stopped)], "{template}");
        }
        let slow = Budget { iterations: 10_000, time: Duration::ZERO };
        let err = render_within("states/x.yaml", "{% for a in range(end=2) %}{% endfor %}", &ctx(), slow)
            .unwrap_err();
        assert_eq!(
            err[0].to_string(),
            format!("states/x.yaml:1:4: {}", budget::Exceeded::Time(Duration::ZERO).message())
        );
    }

    #[test]
    fn the_default_budget_stops_the_issues_example() {
        let example =
            "{% for a in range(end=100000) %}{% for b in range(end=100000) %}{% endfor %}{% endfor %}";
        let err = render("states/x.yaml", example, &ctx()).unwrap_err();
        // within the 2 s or the million iterations, whichever a loaded machine reaches first
        assert_eq!((err.len(), err[0].line, err[0].col), (1, 1, 36), "{err:?}");
        assert!(err[0].message.starts_with("rendering stopped in this loop after "), "{err:?}");
    }

    #[test]
    fn errors_after_a_loop_point_into_the_users_text() {
        let err = render("t.yaml", "{% for x in [1] %}{{ nope }}{% endfor %}", &ctx()).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "t.yaml:1:22: variable `nope` is not defined. Available variables: grains, id, peers, pillar, roles"
        );
        let err = render("t.yaml", "{{ [x for x in [1]] }} {{ x | nope }}", &ctx()).unwrap_err();
        assert_eq!(err[0].to_string(), "t.yaml:1:31: unknown filter `nope`");
    }

    #[test]
    fn salt_helpers_render_and_point_at_the_call_that_failed() {
        let mut ctx = ctx();
        ctx.pillar.insert("db".into(), json!({"host": "db-1", "ports": [5432]}));
        ctx.grains.insert("os".into(), json!("Debian"));
        let cases = [
            (r#"{{ pillar_get(key="db:host", default="localhost") }}"#, "db-1"),
            (r#"{{ pillar_get(key="db.ports.0") }}"#, "5432"),
            (r#"{{ pillar_get(key="db:user", default="app") }}"#, "app"),
            (r#"{{ grains_get(key="os") }}/{{ grains_get(key="osrelease", default="?") }}"#, "Debian/?"),
            (r#"{{ pillar.db | yaml }}"#, "{host: db-1, ports: [5432]}"),
            (
                r#"{{ pillar.db | yaml(flow_style=false) | indent(width=2) }}"#,
                "host: db-1\n  ports:\n  - 5432",
            ),
            (r#"{{ pillar.db.ports | json }}"#, "[5432]"),
        ];
        for (template, want) in cases {
            assert_eq!(render("t.yaml", template, &ctx).unwrap(), want, "{template}");
        }
        let err = render("t.yaml", "a: 1\nb: {{ pillar_get(key=\"db:hots\") }}\n", &ctx).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "t.yaml:2:7: pillar_get: `db:hots` is not found: `db` has no key `hots` (it has: host, ports); \
             give default=… for a key that may be missing"
        );
        for jinja in [r#"{{ pillar_get("db:host") }}"#, r#"{{ pillar.x | default("a") }}"#] {
            let err = render("t.yaml", jinja, &ctx).unwrap_err();
            assert_eq!(
                err[0].message,
                format!("found string but expected identifier{NAMED_ARGUMENTS}"),
                "{jinja}"
            );
        }
        let err = render("t.yaml", "{% for 1 in x %}{% endfor %}", &ctx).unwrap_err();
        assert!(!err[0].message.contains("named arguments"), "{err:?}");
        let err = render("t.yaml", r#"{{ pillar_get(key="db", defualt=1) }}"#, &ctx).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "t.yaml:1:4: pillar_get: unknown argument `defualt`; expected `key` or `default`"
        );
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

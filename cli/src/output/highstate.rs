//! `--out highstate`: state results laid out as Salt's highstate outputter does.
//!
//! A return is a state return when it is a non-empty object whose every key is a state key
//! (`<module>_|-<id>_|-<name>_|-<function>`) holding an object. Its states print in run
//! order (`__run_num__`), one block of fields each, then a summary for the minion. Any other
//! return (a rendering error, a non-state function) prints as text.
//!
//! `--state-output` picks, per state, between that block and one terse line, as Salt's
//! `state_output` does ([`StateOutput`]).
//!
//! The results are read by field name (`State::read`), with what is missing taken from the
//! key: the CLI links the API client only, never the wire crate that defines them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use api::MinionReturn;
use serde_json::{Map, Value};

use crate::output::{Paint, value_text};

/// The functions whose returns are state results; their default output is highstate.
pub const STATE_FUNCTIONS: &[&str] = &["state.apply", "state.highstate"];

pub fn is_state_function(fun: &str) -> bool {
    STATE_FUNCTIONS.contains(&fun)
}

/// `--state-output`: how much of each state prints (Salt's `state_output`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StateOutput {
    /// Every state in full
    #[default]
    Full,
    /// Every state on one line
    Terse,
    /// One line for each state, except that a failed one prints in full
    Mixed,
    /// One line for a state that succeeded without changes; in full for the others
    Changes,
}

impl StateOutput {
    /// Whether `state` prints on one line. As in Salt, `changes` counts a `test=true` state
    /// (result None) as not succeeded: it prints in full.
    fn terse(self, state: &State) -> bool {
        match self {
            StateOutput::Full => false,
            StateOutput::Terse => true,
            StateOutput::Mixed => state.result != Some(false),
            StateOutput::Changes => state.result == Some(true) && !state.changed(),
        }
    }
}

/// What separates the parts of a state key.
const SEP: &str = "_|-";
/// Field labels are right-aligned to this width (Salt's layout).
const LABEL: usize = 12;
/// Where a field's value starts; its further lines and the changes start here too.
const INDENT: usize = LABEL + 2;

/// One state's result.
#[derive(Clone, Debug, PartialEq)]
pub struct State<'a> {
    key: &'a str,
    pub id: String,
    pub function: String,
    pub name: String,
    /// true: done (or nothing to do); false: failed; None: would change (`test=true`).
    pub result: Option<bool>,
    pub comment: String,
    pub changes: &'a Value,
    pub duration_ms: f64,
    run_num: u64,
}

impl<'a> State<'a> {
    /// Reads a result by field name; the id, name and function default to the key's parts.
    fn read(key: &'a str, fields: &'a Map<String, Value>) -> Self {
        let parts: Vec<&str> = key.split(SEP).collect();
        let (module, id, name, fun) = match parts[..] {
            [module, id, ref name @ .., fun] if !name.is_empty() => (module, id, name.join(SEP), fun),
            _ => ("", key, String::new(), ""),
        };
        let text = |field: &str| fields.get(field).and_then(Value::as_str).map(str::to_string);
        let comment = match fields.get("comment") {
            Some(Value::String(s)) => s.clone(),
            // Salt lets a comment be a list of lines.
            Some(Value::Array(lines)) => lines
                .iter()
                .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        State {
            key,
            id: text("__id__").unwrap_or_else(|| id.to_string()),
            function: text("function")
                .unwrap_or_else(|| if module.is_empty() { String::new() } else { format!("{module}.{fun}") }),
            name: text("name").unwrap_or(name),
            result: fields.get("result").and_then(Value::as_bool),
            comment,
            changes: fields.get("changes").unwrap_or(&Value::Null),
            duration_ms: fields.get("duration").and_then(Value::as_f64).unwrap_or(0.0),
            run_num: fields.get("__run_num__").and_then(Value::as_u64).unwrap_or(u64::MAX),
        }
    }

    /// Whether it changed something (or, with result None, would).
    pub fn changed(&self) -> bool {
        match self.changes {
            Value::Null => false,
            Value::Object(map) => !map.is_empty(),
            Value::Array(items) => !items.is_empty(),
            Value::String(s) => !s.is_empty(),
            Value::Bool(_) | Value::Number(_) => true,
        }
    }

    fn paint(&self) -> Paint {
        match self.result {
            Some(true) => Paint::Green,
            Some(false) => Paint::Red,
            None => Paint::Yellow,
        }
    }
}

/// The states of a state return in run order, or `None` if `ret` is not a state return.
pub fn states(ret: &Value) -> Option<Vec<State<'_>>> {
    let map = ret.as_object().filter(|map| !map.is_empty())?;
    let mut states = map
        .iter()
        .map(|(key, fields)| Some(State::read(key, fields.as_object().filter(|_| key.contains(SEP))?)))
        .collect::<Option<Vec<_>>>()?;
    states.sort_by(|a, b| (a.run_num, a.key).cmp(&(b.run_num, b.key)));
    Some(states)
}

/// Counts for a minion's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Results true or None.
    pub succeeded: usize,
    /// Results true, with changes.
    pub changed: usize,
    /// Results None: would change (`test=true`).
    pub would_change: usize,
    pub failed: usize,
    pub total: usize,
    pub run_time_ms: f64,
}

impl Summary {
    pub fn of(states: &[State]) -> Self {
        let mut sum = Summary { total: states.len(), ..Summary::default() };
        for state in states {
            match state.result {
                Some(true) => {
                    sum.succeeded += 1;
                    sum.changed += usize::from(state.changed());
                }
                None => {
                    sum.succeeded += 1;
                    sum.would_change += 1;
                }
                Some(false) => sum.failed += 1,
            }
            sum.run_time_ms += state.duration_ms;
        }
        sum
    }
}

/// Every minion's return: state returns as highstate, the others as text.
pub fn returns(returns: &BTreeMap<String, MinionReturn>, color: bool, state_output: StateOutput) -> String {
    let mut out = String::new();
    for (id, ret) in returns {
        let paint = if ret.success { Paint::Green } else { Paint::Red };
        out.push_str(&paint.apply(&format!("{id}:"), color));
        out.push('\n');
        match states(&ret.ret) {
            Some(states) => minion(id, &states, color, state_output, &mut out),
            None => out.push_str(&value_text(&ret.ret, 4)),
        }
    }
    out
}

/// One minion's states, each after a rule or on one line, then its summary.
fn minion(id: &str, states: &[State], color: bool, state_output: StateOutput, out: &mut String) {
    for state in states {
        if state_output.terse(state) {
            terse_line(state, color, out);
        } else {
            out.push_str("----------\n");
            state_block(state, color, out);
        }
    }
    out.push('\n');
    summary(id, &Summary::of(states), color, out);
}

/// Salt's terse line: `  Name: NAME - Function: FUN - Result: Clean - Duration: 1.000 ms`,
/// the result `Clean`, `Changed`, `Failed` or `Differs` (would change, with `test=true`).
fn terse_line(state: &State, color: bool, out: &mut String) {
    let result = match state.result {
        Some(false) => "Failed",
        None => "Differs",
        Some(true) if state.changed() => "Changed",
        Some(true) => "Clean",
    };
    let line = format!(
        "  Name: {} - Function: {} - Result: {result} - Duration: {:.3} ms",
        state.name, state.function, state.duration_ms
    );
    out.push_str(&state.paint().apply(&line, color));
    out.push('\n');
}

fn state_block(state: &State, color: bool, out: &mut String) {
    let paint = state.paint();
    let result = match state.result {
        Some(true) => "True",
        Some(false) => "False",
        None => "None",
    };
    let fields = [
        ("ID", state.id.as_str()),
        ("Function", &state.function),
        ("Name", &state.name),
        ("Result", result),
        ("Comment", &state.comment),
        ("Duration", &format!("{:.3} ms", state.duration_ms)),
        ("Changes", ""),
    ];
    for (label, value) in fields {
        let mut lines = value.lines();
        let first = format!("{label:>LABEL$}: {}", lines.next().unwrap_or(""));
        out.push_str(&paint.apply(first.trim_end(), color));
        out.push('\n');
        for line in lines {
            out.push_str(&paint.apply(&format!("{:INDENT$}{line}", ""), color));
            out.push('\n');
        }
    }
    changes(state.changes, color, out);
}

/// A state's changes below its `Changes:` label; a unified `diff` prints as its lines.
fn changes(changes: &Value, color: bool, out: &mut String) {
    let Value::Object(map) = changes else {
        if !matches!(changes, Value::Null) {
            out.push_str(&value_text(changes, INDENT));
        }
        return;
    };
    for (key, value) in map {
        match value {
            Value::String(diff) if key == "diff" => {
                let _ = writeln!(out, "{:INDENT$}diff:", "");
                for line in diff.lines() {
                    if line.is_empty() {
                        out.push('\n');
                        continue;
                    }
                    let paint = if line.starts_with("+++") || line.starts_with("---") {
                        None
                    } else if line.starts_with('+') {
                        Some(Paint::Green)
                    } else if line.starts_with('-') {
                        Some(Paint::Red)
                    } else if line.starts_with("@@") {
                        Some(Paint::Blue)
                    } else {
                        None
                    };
                    let line = format!("{:w$}{line}", "", w = INDENT + 4);
                    out.push_str(&paint.map_or_else(|| line.clone(), |p| p.apply(&line, color)));
                    out.push('\n');
                }
            }
            _ => {
                let one = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
                out.push_str(&value_text(&one, INDENT));
            }
        }
    }
}

/// `Summary for <id>`, Salt's layout: the numbers of the two totals right-aligned together.
fn summary(id: &str, sum: &Summary, color: bool, out: &mut String) {
    let mut changed = format!("changed={}", sum.changed);
    if sum.would_change > 0 {
        let _ = write!(changed, ", would change={}", sum.would_change);
    }
    let _ = writeln!(out, "Summary for {id}\n------------");
    out.push_str(&Paint::Green.apply(&format!("Succeeded: {} ({changed})", sum.succeeded), color));
    out.push('\n');
    let failed = format!("Failed:    {}", sum.failed);
    out.push_str(&if sum.failed > 0 { Paint::Red.apply(&failed, color) } else { failed });
    out.push('\n');
    let _ = writeln!(out, "------------");
    let _ = writeln!(out, "Total states run: {:>5}", sum.total);
    let _ = writeln!(out, "Total run time: {:>7.3} ms", sum.run_time_ms);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ret(success: bool, ret: Value) -> MinionReturn {
        MinionReturn { success, retcode: i32::from(!success), ret, started_ms: 1, finished_ms: 2 }
    }

    /// A `state.apply` return with a diff, a would-change (test) result, a failure with a
    /// two-line comment, and an unchanged state; its keys sort unlike its run order.
    fn web_1() -> Value {
        json!({
            "file_|-worker-config_|-/etc/coins/worker.toml_|-managed": {
                "__id__": "worker-config", "function": "file.managed", "name": "/etc/coins/worker.toml",
                "result": true, "comment": "updated /etc/coins/worker.toml",
                "changes": {"diff": "--- /etc/coins/worker.toml\n+++ /etc/coins/worker.toml\n@@ -1,2 +1,2 @@\n threads = 2\n-url = \"http://a\"\n+url = \"http://b\"\n"},
                "duration": 1.5, "__run_num__": 0
            },
            "file_|-coins-dir_|-/var/lib/coins_|-directory": {
                "__id__": "coins-dir", "function": "file.directory", "name": "/var/lib/coins",
                "result": null, "comment": "would create /var/lib/coins",
                "changes": {"created": "/var/lib/coins"}, "duration": 0.25, "__run_num__": 1
            },
            "daemon_|-worker_|-worker_|-running": {
                "__id__": "worker", "function": "daemon.running", "name": "worker",
                "result": false, "comment": "health check failed\nGET http://127.0.0.1:8003/health: connection refused",
                "changes": {}, "duration": 2000.0, "__run_num__": 2
            },
            "cmd_|-migrate_|-coins migrate_|-run": {
                "__id__": "migrate", "function": "cmd.run", "name": "coins migrate",
                "result": true, "comment": "unless: the command succeeded", "changes": {},
                "duration": 0.125, "__run_num__": 3
            }
        })
    }

    const WEB_1: &str = r#"web-1:
----------
          ID: worker-config
    Function: file.managed
        Name: /etc/coins/worker.toml
      Result: True
     Comment: updated /etc/coins/worker.toml
    Duration: 1.500 ms
     Changes:
              diff:
                  --- /etc/coins/worker.toml
                  +++ /etc/coins/worker.toml
                  @@ -1,2 +1,2 @@
                   threads = 2
                  -url = "http://a"
                  +url = "http://b"
----------
          ID: coins-dir
    Function: file.directory
        Name: /var/lib/coins
      Result: None
     Comment: would create /var/lib/coins
    Duration: 0.250 ms
     Changes:
              created: /var/lib/coins
----------
          ID: worker
    Function: daemon.running
        Name: worker
      Result: False
     Comment: health check failed
              GET http://127.0.0.1:8003/health: connection refused
    Duration: 2000.000 ms
     Changes:
----------
          ID: migrate
    Function: cmd.run
        Name: coins migrate
      Result: True
     Comment: unless: the command succeeded
    Duration: 0.125 ms
     Changes:

Summary for web-1
------------
Succeeded: 3 (changed=1, would change=1)
Failed:    1
------------
Total states run:     4
Total run time: 2001.875 ms
"#;

    #[test]
    fn state_returns_render_as_highstate() {
        // (minion id, success, ret)..., expected output
        type Case = (Vec<(&'static str, bool, Value)>, String);
        let table: Vec<Case> = vec![
            (vec![("web-1", false, web_1())], WEB_1.to_string()),
            // one state, fields missing: taken from the key; numbers aligned as Salt does
            (
                vec![(
                    "db-1",
                    true,
                    json!({"file_|-pg-conf_|-/etc/pg.conf_|-managed": {"result": true, "duration": 13.581}}),
                )],
                "db-1:
----------
          ID: pg-conf
    Function: file.managed
        Name: /etc/pg.conf
      Result: True
     Comment:
    Duration: 13.581 ms
     Changes:

Summary for db-1
------------
Succeeded: 1 (changed=0)
Failed:    0
------------
Total states run:     1
Total run time:  13.581 ms
"
                .to_string(),
            ),
            // not state returns: text, minion by minion
            (
                vec![
                    ("a", false, json!("states/coins/worker.yaml:3:7: unknown state function file.manage")),
                    ("b", true, json!({})),
                    ("c", true, json!({"os": "debian"})),
                    ("d", true, json!({"x_|-y_|-z_|-w": "not an object"})),
                ],
                "a:\n    states/coins/worker.yaml:3:7: unknown state function file.manage\nb:\n    {}\n\
                 c:\n    os: debian\nd:\n    x_|-y_|-z_|-w: not an object\n"
                    .to_string(),
            ),
        ];
        for (input, want) in table {
            let returns: BTreeMap<String, MinionReturn> =
                input.into_iter().map(|(id, ok, value)| (id.to_string(), ret(ok, value))).collect();
            let got = super::returns(&returns, false, StateOutput::Full);
            assert_eq!(got, want, "\n--- got\n{got}--- want\n{want}");
        }
    }

    #[test]
    fn highstate_mixes_with_text_and_summarises() {
        let returns = BTreeMap::from([
            ("web-1".to_string(), ret(false, web_1())),
            ("web-2".to_string(), ret(false, json!("render failed"))),
        ]);
        let text = super::returns(&returns, false, StateOutput::Full);
        assert!(text.starts_with(WEB_1), "{text}");
        assert_eq!(&text[WEB_1.len()..], "web-2:\n    render failed\n");

        let states = states(&returns["web-1"].ret).unwrap();
        let ids: Vec<&str> = states.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["worker-config", "coins-dir", "worker", "migrate"]);
        let want =
            Summary { succeeded: 3, changed: 1, would_change: 1, failed: 1, total: 4, run_time_ms: 2001.875 };
        assert_eq!(Summary::of(&states), want);
    }

    #[test]
    fn highstate_colors_by_result() {
        let returns = BTreeMap::from([("web-1".to_string(), ret(false, web_1()))]);
        let text = super::returns(&returns, true, StateOutput::Full);
        for want in [
            "\x1b[31mweb-1:\x1b[0m\n",
            "\x1b[32m      Result: True\x1b[0m\n",
            "\x1b[33m      Result: None\x1b[0m\n",
            "\x1b[31m      Result: False\x1b[0m\n",
            "\x1b[31m              GET http://127.0.0.1:8003/health: connection refused\x1b[0m\n",
            "                  --- /etc/coins/worker.toml\n",
            "\x1b[31m                  -url = \"http://a\"\x1b[0m\n",
            "\x1b[32m                  +url = \"http://b\"\x1b[0m\n",
            "\x1b[32mSucceeded: 3 (changed=1, would change=1)\x1b[0m\n",
            "\x1b[31mFailed:    1\x1b[0m\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    /// A block of `WEB_1` by its state id, with its rule.
    fn block_of(id: &str) -> String {
        let start = WEB_1.find(&format!("----------\n          ID: {id}\n")).unwrap();
        let end = WEB_1[start + 1..]
            .find("----------\n")
            .map_or(WEB_1.find("\nSummary").unwrap() + 1, |e| start + 1 + e);
        WEB_1[start..end].to_string()
    }

    #[test]
    fn state_output_prints_terse_lines_as_salt_does() {
        let returns = BTreeMap::from([("web-1".to_string(), ret(false, web_1()))]);
        let summary = &WEB_1[WEB_1.find("\nSummary").unwrap()..];
        let config = "  Name: /etc/coins/worker.toml - Function: file.managed - Result: Changed - Duration: 1.500 ms\n";
        let dir =
            "  Name: /var/lib/coins - Function: file.directory - Result: Differs - Duration: 0.250 ms\n";
        let worker = "  Name: worker - Function: daemon.running - Result: Failed - Duration: 2000.000 ms\n";
        let migrate = "  Name: coins migrate - Function: cmd.run - Result: Clean - Duration: 0.125 ms\n";
        let (b_config, b_dir, b_worker) =
            (block_of("worker-config"), block_of("coins-dir"), block_of("worker"));
        let cases = [
            (StateOutput::Full, WEB_1.to_string()),
            (StateOutput::Terse, format!("web-1:\n{config}{dir}{worker}{migrate}{summary}")),
            // failed in full
            (StateOutput::Mixed, format!("web-1:\n{config}{dir}{b_worker}{migrate}{summary}")),
            // changed, would change and failed in full
            (StateOutput::Changes, format!("web-1:\n{b_config}{b_dir}{b_worker}{migrate}{summary}")),
        ];
        for (mode, want) in cases {
            let got = super::returns(&returns, false, mode);
            assert_eq!(got, want, "{mode:?}\n--- got\n{got}--- want\n{want}");
        }
        let colored = super::returns(&returns, true, StateOutput::Terse);
        assert!(colored.contains(&format!("\x1b[31m{}\x1b[0m\n", worker.trim_end())), "{colored}");
    }

    #[test]
    fn state_functions() {
        assert!(is_state_function("state.apply"));
        assert!(is_state_function("state.highstate"));
        assert!(!is_state_function("state.show"));
        assert!(!is_state_function("test.ping"));
    }
}

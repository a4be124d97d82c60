//! A rendered state file → its declarations, in Salt's structure:
//!
//! ```yaml
//! worker:                      # state id, unique across the files applied to a minion
//!   daemon.running:            # module.function (or `daemon:` with `- running` in the list)
//!     - cmd: [/usr/local/bin/coins, worker]
//!     - watch:
//!       - file: worker-config  # requisite: module: state id (or `sls: <state file>`)
//! ```
//!
//! One id may hold several functions of different modules (`file.managed` and
//! `daemon.running` under `worker`); each is its own resource.

use serde_yaml::{Mapping, Value};

use crate::args::{Arg, Args};
use crate::diag::{Diagnostic, finish, guard};
use crate::function::{self, Function, MODULES, REQUISITES, SPECS};
use crate::locate::{Loc, Text};
use crate::plan::RequisiteKind;

/// One function under one state id.
pub(crate) struct Declared {
    pub(crate) id: String,
    pub(crate) function: Function,
    pub(crate) requisites: Vec<Written>,
    /// Where the state id is.
    pub(crate) at: Loc,
}

/// A requisite as written: `- file: worker-config`, `- sls: coins.base`, `- worker`.
pub(crate) struct Written {
    pub(crate) kind: RequisiteKind,
    /// `None` for a bare id (any module).
    pub(crate) module: Option<String>,
    pub(crate) target: String,
    pub(crate) at: Loc,
}

/// Parse `rendered`, the output of the template `template` (the contents of `file`).
pub(crate) fn declarations(
    file: &str,
    template: &str,
    rendered: &str,
) -> Result<Vec<Declared>, Vec<Diagnostic>> {
    let text = Text::rendered(file, template, rendered);
    let value = guard(file, "parsing", || serde_yaml::from_str::<Value>(rendered))
        .map_err(|d| vec![d])?
        .map_err(|e| vec![text.yaml_error(&e)])?;
    let map =
        match value {
            Value::Null => return Ok(Vec::new()),
            Value::Mapping(map) => map,
            other => {
                return Err(vec![text.start().diag(format!(
                    "expected a map of state ids to state functions, got {}",
                    describe(&other)
                ))]);
            }
        };
    let mut diags = Vec::new();
    let mut declared = Vec::new();
    for (key, body) in map {
        let id = match key {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                diags.push(text.start().diag(format!("expected a state id, got {}", describe(&other))));
                continue;
            }
        };
        let line = text.top_key(&id).unwrap_or(0);
        let at = text.at(line, 0);
        if id.trim().is_empty() || id.contains(char::is_control) {
            diags.push(at.diag("expected a state id, got an empty or unprintable one"));
            continue;
        }
        let block = Block { text: &text, start: line, end: text.block_end(line) };
        match body {
            Value::Mapping(functions) if !functions.is_empty() => {
                parse_id(&block, &id, &at, functions, &mut declared, &mut diags);
            }
            other => diags.push(at.diag(format!(
                "state `{id}`: expected state functions such as `file.managed:` under it, got {}",
                describe(&other)
            ))),
        }
    }
    diags.sort_by_key(|d| (d.line, d.col));
    finish(declared, diags)
}

/// The lines of one state id's block, to find its keys in.
struct Block<'t, 'a> {
    text: &'t Text<'a>,
    start: usize,
    end: usize,
}

impl Block<'_, '_> {
    /// Where `key` is, at or after line `from` (moved past it); the id's line if not found.
    fn find(&self, from: &mut usize, key: &str) -> Loc {
        match self
            .text
            .find_key(*from, self.end, key)
            .or_else(|| self.text.find_key(self.start, self.end, key))
        {
            Some((line, col)) => {
                *from = line;
                self.text.at(line, col)
            }
            None => self.text.at(self.start, 0),
        }
    }
}

fn parse_id(
    block: &Block,
    id: &str,
    id_at: &Loc,
    functions: Mapping,
    declared: &mut Vec<Declared>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut cursor = block.start;
    let mut modules: Vec<String> = Vec::new();
    for (key, args) in functions {
        let Value::String(key) = key else {
            diags.push(id_at.diag(format!("state `{id}`: expected a function name, got {}", describe(&key))));
            continue;
        };
        let at = block.find(&mut cursor, &key);
        let items = match args {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items,
            other => {
                diags.push(at.diag(format!(
                    "state `{id}`: expected a list of `- argument: value` under `{key}`, got {}",
                    describe(&other)
                )));
                continue;
            }
        };
        let (module, mut function) = match key.split_once('.') {
            Some((module, function)) => (module.to_string(), Some(function.to_string())),
            None => (key.clone(), None),
        };
        let mut args: Vec<Arg> = Vec::new();
        let mut arg_cursor = cursor;
        for item in items {
            match item {
                // Salt's other spelling: `file: [managed, {name: /x}]`
                Value::String(name) if function.is_none() => function = Some(name),
                Value::Mapping(pairs) => {
                    for (arg, value) in pairs {
                        let Value::String(arg) = arg else {
                            diags.push(at.diag(format!(
                                "`{key}` in state `{id}`: expected an argument name, got {}",
                                describe(&arg)
                            )));
                            continue;
                        };
                        let arg_at = block.find(&mut arg_cursor, &arg);
                        if args.iter().any(|a| a.key == arg) {
                            diags.push(
                                arg_at.diag(format!(
                                    "`{key}` in state `{id}`: argument `{arg}` is given twice"
                                )),
                            );
                            continue;
                        }
                        args.push(Arg::new(arg, value, arg_at));
                    }
                }
                other => diags.push(at.diag(format!(
                    "`{key}` in state `{id}`: expected `- argument: value`, got {}",
                    describe(&other)
                ))),
            }
        }
        let Some(function) = function else {
            diags.push(at.diag(format!(
                "state `{id}`: `{key}` names no function; expected `{key}.<function>:` such as {}",
                functions_of(&module)
            )));
            continue;
        };
        let name = format!("{module}.{function}");
        let Some(spec) = function::spec(&name) else {
            let expected = if MODULES.contains(&module.as_str()) {
                format!("the {module} module has {}", functions_of(&module))
            } else {
                format!("expected one of {}", SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
            };
            diags.push(at.diag(format!("state `{id}`: unknown state function `{name}`; {expected}")));
            continue;
        };
        if modules.contains(&module) {
            diags.push(at.diag(format!(
                "state `{id}` has a second `{module}` function; expected one function per module, \
                 give `{name}` its own state id"
            )));
            continue;
        }
        modules.push(module);

        let mut args = Args::new(name, id.to_string(), at, args, diags);
        let mut requisites = Vec::new();
        for kind in RequisiteKind::ALL {
            requisites.extend(take_requisites(block, &mut args, kind));
        }
        let parsed = function::parse(spec, &mut args);
        let allowed: Vec<&str> = spec.args.iter().chain(REQUISITES.iter()).copied().collect();
        args.finish(&allowed);
        if let Some(function) = parsed {
            declared.push(Declared { id: id.to_string(), function, requisites, at: id_at.clone() });
        }
    }
}

/// `- require: [{file: worker-config}, {sls: coins.base}, worker]`
fn take_requisites(block: &Block, args: &mut Args, kind: RequisiteKind) -> Vec<Written> {
    let Some((value, at)) = args.take(kind.as_str()) else { return Vec::new() };
    let items = match value {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        other => {
            let message = format!(
                "{}: `{kind}`: expected a list such as `- file: worker-config`, got {}",
                args.function,
                describe(&other)
            );
            args.error(&at, message);
            return Vec::new();
        }
    };
    let mut cursor = block.start;
    let mut line_of = |target: &str| -> Loc {
        // the requisite's own line when it can be found after the requisite key
        let from = block.text.find_key(block.start, block.end, kind.as_str()).map_or(block.start, |(l, _)| l);
        cursor = cursor.max(from);
        match block.text.find_text(cursor, block.end, target) {
            Some((line, col)) => {
                cursor = line;
                block.text.at(line, col)
            }
            None => at.clone(),
        }
    };
    let mut written = Vec::new();
    for item in items {
        let (module, target) = match item {
            Value::String(target) => (None, target),
            Value::Mapping(pair) if pair.len() == 1 => {
                let Some((Value::String(module), Value::String(target))) = pair.into_iter().next() else {
                    let message =
                        format!("{}: `{kind}`: expected `- module: state id` with strings", args.function);
                    args.error(&at, message);
                    continue;
                };
                (Some(module), target)
            }
            other => {
                let message = format!(
                    "{}: `{kind}`: expected `- module: state id` such as `- file: worker-config`, got {}",
                    args.function,
                    describe(&other)
                );
                args.error(&at, message);
                continue;
            }
        };
        let here = line_of(&target);
        if let Some(module) = module.as_deref().filter(|m| !MODULES.contains(m) && *m != "sls") {
            let message = format!(
                "{}: `{kind}`: unknown module `{module}`; expected {} or sls",
                args.function,
                MODULES.join(", ")
            );
            args.error(&here, message);
            continue;
        }
        written.push(Written { kind, module, target, at: here });
    }
    written
}

fn functions_of(module: &str) -> String {
    let names: Vec<&str> =
        SPECS.iter().map(|s| s.name).filter(|n| n.split('.').next() == Some(module)).collect();
    if names.is_empty() {
        SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    } else {
        names.join(", ")
    }
}

/// A YAML value's kind, for "expected …, got a list".
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

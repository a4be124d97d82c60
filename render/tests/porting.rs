//! `docs/porting-from-salt.md` says what it shows: every drover example in it is rendered
//! here, so the page cannot drift from what drover does.
//!
//! The page's conventions, checked here:
//! - the first line of every fenced block names it: `# states/…` or `# roles/…` (a drover
//!   file, that label line left out), `# <path>, rendered for <id>` (what that template
//!   renders to), `# /srv/…` (Salt's side, not checked), or `# the minion of the examples`
//!   (its `id`, `grains` and `peers`, YAML);
//! - the drover files are one repository: it loads, the minion's plan with every role in it
//!   has no problem and holds every state file;
//! - in a table whose third column's header starts with `renders`, each row whose drover
//!   (second) cell starts with a code span is a template: it renders, with the example
//!   minion and the pillar of its roles, to the third cell's code span.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use render::{Files, Minion, Peer, Repo, StateId, render_source};
use serde::Deserialize;

const DOC: &str = "docs/porting-from-salt.md";

/// `# the minion of the examples`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Example {
    id: String,
    grains: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    peers: BTreeMap<String, Vec<Peer>>,
}

/// A fenced block: its label (the first line without `# `) and the lines after it.
struct Block {
    label: String,
    body: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") {
            continue;
        }
        let mut inside: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        assert!(!inside.is_empty(), "{DOC}: an empty fenced block");
        let first = inside.remove(0);
        let label =
            first.strip_prefix("# ").unwrap_or_else(|| panic!("{DOC}: a block without a label: {first:?}"));
        let body = inside.iter().map(|l| format!("{l}\n")).collect();
        found.push(Block { label: label.to_string(), body });
    }
    found
}

/// A table row's cells, split at `|` but not at `\|` (which is a `|` inside a cell).
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => cells.last_mut().unwrap().push(chars.next().unwrap()),
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The first code span of a cell.
fn code_span(cell: &str) -> Option<&str> {
    let rest = cell.split_once('`')?.1;
    Some(rest.split_once('`').expect("a closed code span").0)
}

#[test]
fn every_drover_example_of_the_porting_guide_renders() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let mut files = Files::new();
    let mut rendered = Vec::new();
    let mut example: Option<Example> = None;
    for block in blocks(&doc) {
        if block.label.starts_with("/srv/") {
            continue; // Salt's side
        } else if block.label == "the minion of the examples" {
            example = Some(serde_yaml::from_str(&block.body).expect("the example minion"));
        } else if let Some((source, id)) = block.label.split_once(", rendered for ") {
            rendered.push((source.to_string(), id.to_string(), block.body));
        } else if block.label.starts_with("states/") || block.label.starts_with("roles/") {
            let before = files.insert(block.label.clone(), block.body);
            assert!(before.is_none(), "{DOC}: two blocks are {}", block.label);
        } else {
            panic!(
                "{DOC}: a block labelled {:?}: expected a drover file, a rendered file or Salt's",
                block.label
            );
        }
    }
    let example = example.expect("a block `# the minion of the examples`");
    let minion =
        Minion { id: example.id.clone(), grains: example.grains, peers: example.peers, ..Minion::default() };

    let problems = |d: Vec<render::Diagnostic>| d.iter().map(|d| format!("{d}\n")).collect::<String>();
    let repo = Repo::load(&files)
        .unwrap_or_else(|d| panic!("{DOC}: the drover files do not load:\n{}", problems(d)));
    let roles: Vec<String> = files
        .keys()
        .filter_map(|p| p.strip_prefix("roles/")?.strip_suffix(".yaml"))
        .filter(|name| *name != "top")
        .map(str::to_string)
        .collect();
    assert!(!roles.is_empty(), "{DOC}: no role file");
    let plan = repo
        .plan(&files, &minion, &roles)
        .unwrap_or_else(|d| panic!("{DOC}: the drover files do not plan:\n{}", problems(d)));
    let planned: BTreeSet<String> = plan.resources.iter().map(|r| r.state.to_string()).collect();
    let mut state_files = 0;
    for path in files.keys().filter(|p| p.starts_with("states/") && p.ends_with(".yaml")) {
        let id = StateId::from_path(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            planned.contains(&id.to_string()),
            "{DOC}: {path} is in no role's `states`, or declares nothing"
        );
        state_files += 1;
    }
    assert!(state_files >= 4, "{DOC}: the state file examples are found: {state_files}");

    let ctx = render::Context::new(&minion, &repo.roles_named(&roles).expect("the roles exist"));
    for (source, id, want) in &rendered {
        assert_eq!(
            id, &example.id,
            "{DOC}: `{source}, rendered for {id}`: the example minion is {}",
            example.id
        );
        let contents =
            files.get(source).unwrap_or_else(|| panic!("{DOC}: rendered {source}, but no block is it"));
        let got = render_source(source, contents, &ctx)
            .unwrap_or_else(|d| panic!("{DOC}: {source} does not render:\n{}", problems(d)));
        assert_eq!(&got, want, "{DOC}: {source} renders otherwise than shown");
    }
    assert!(!rendered.is_empty(), "{DOC}: a rendered template is shown");

    let mut rows = 0;
    let mut in_table = false;
    for line in doc.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let row = cells(line);
        if row.get(2).is_some_and(|c| c.starts_with("renders")) {
            in_table = true;
            continue;
        }
        if !in_table || row.iter().all(|c| c.chars().all(|c| c == '-' || c == ':')) {
            continue;
        }
        let [_, drover, gives, ..] = &row[..] else { panic!("{DOC}: a row of fewer than 3 cells: {line}") };
        if !drover.starts_with('`') {
            continue; // no equivalent: said in words
        }
        let template = code_span(drover).expect("starts with a code span");
        let want = code_span(gives).unwrap_or_else(|| panic!("{DOC}: no result shown for `{template}`"));
        let got = render_source(DOC, template, &ctx)
            .unwrap_or_else(|d| panic!("{DOC}: `{template}` does not render:\n{}", problems(d)));
        assert_eq!(got, want, "{DOC}: `{template}` renders otherwise than shown");
        rows += 1;
    }
    assert!(rows >= 15, "{DOC}: the table's examples are found: {rows}");
}

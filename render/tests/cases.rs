//! Data-driven tests: each `tests/data/*.txt` holds a case's inputs and its expected output
//! side by side. `UPDATE_EXPECT=1 cargo test -p render` rewrites the expected sections
//! (review the diff before committing).
//!
//! A case file:
//!
//! ```text
//! # what the case checks (comment lines before the header)
//! id: w1                    # header (YAML): the minion
//! roles: [worker]           # its roles, or `matches:` targets of roles/top.yaml it matches
//! grains: {}                # optional: grains, pillar (per minion), peers
//! === roles/worker.yaml     # then files, each after `=== <path>`
//! ...
//! === expected              # last: the plan as YAML (+ rendered template sources), or
//! ...                       # the diagnostics, one per line
//! ```
//!
//! With a `fleet.yaml`, the expected output starts with the parsed fleet (as YAML); a header
//! with neither `roles:` nor `matches:` then gives the minion the role of its slot (its `id`
//! is a slot name), and a case without a header plans nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use render::{Files, Function, Minion, Peer, Plan, Repo, TemplateEngine};
use serde::Deserialize;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub matches: Option<Vec<String>>,
    #[serde(default)]
    pub grains: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub pillar: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub peers: BTreeMap<String, Vec<Peer>>,
}

pub struct Case {
    pub header: Header,
    pub files: Files,
    pub expected: String,
    /// Everything up to `=== expected`, kept when rewriting.
    pub input: String,
}

pub fn parse_case(text: &str) -> Case {
    let (input, expected) = match text.find("\n=== expected\n") {
        Some(at) => (&text[..at + 1], &text[at + "\n=== expected\n".len()..]),
        None => (text, ""),
    };
    let mut header_text = String::new();
    let mut files = Files::new();
    let mut current: Option<String> = None;
    for line in input.lines() {
        if let Some(path) = line.strip_prefix("=== ") {
            files.insert(path.trim().to_string(), String::new());
            current = Some(path.trim().to_string());
            continue;
        }
        let target = match &current {
            Some(path) => files.get_mut(path).expect("inserted above"),
            None => &mut header_text,
        };
        target.push_str(line);
        target.push('\n');
    }
    let header: Header = serde_yaml::from_str::<Option<Header>>(&header_text)
        .unwrap_or_else(|e| panic!("bad case header: {e}"))
        .unwrap_or_default();
    Case { header, files, expected: expected.to_string(), input: input.to_string() }
}

/// What a case produces: the plan as YAML and its rendered sources, or the diagnostics.
pub fn run(header: &Header, files: &Files) -> String {
    let repo = match Repo::load(files) {
        Ok(repo) => repo,
        Err(diags) => return lines(diags),
    };
    let minion = Minion {
        id: header.id.clone(),
        grains: header.grains.clone(),
        pillar: header.pillar.clone(),
        peers: header.peers.clone(),
    };
    let mut out = String::new();
    if let Some(fleet) = &repo.fleet {
        out.push_str("--- fleet.yaml as read\n");
        out.push_str(&serde_yaml::to_string(fleet).expect("a fleet serializes"));
        if header.id.is_empty() && header.roles.is_none() && header.matches.is_none() {
            return out;
        }
        out.push_str("--- plan\n");
    }
    let roles: Vec<String> = match (&header.roles, &header.matches) {
        (Some(roles), _) => roles.clone(),
        (None, Some(matches)) => {
            let roles: BTreeSet<String> = repo.top.roles_for(|target| matches.iter().any(|m| m == target));
            out.push_str(&format!(
                "roles from top.yaml: {}\n",
                roles.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            roles.into_iter().collect()
        }
        (None, None) => match repo.fleet.as_ref().and_then(|fleet| fleet.slot_of(&header.id)) {
            Some((role, n)) => {
                out.push_str(&format!("roles from fleet.yaml: {role} (slot {n})\n"));
                vec![role.to_string()]
            }
            None => Vec::new(),
        },
    };
    match repo.plan(files, &minion, &roles) {
        Ok(plan) => {
            out.push_str(&serde_yaml::to_string(&plan).expect("a plan serializes"));
            out.push_str(&rendered_sources(&plan, files, &repo, &minion, &roles));
            out
        }
        Err(diags) => out + &lines(diags),
    }
}

fn rendered_sources(plan: &Plan, files: &Files, repo: &Repo, minion: &Minion, roles: &[String]) -> String {
    let ctx = render::Context::new(minion, &repo.roles_named(roles).expect("roles exist"));
    let mut out = String::new();
    for resource in &plan.resources {
        let Function::FileManaged(managed) = &resource.function else { continue };
        if let (Some(source), Some(TemplateEngine::Tera)) = (&managed.source, managed.template) {
            let text = render::render_source(source, &files[source], &ctx).expect("checked by Repo::plan");
            out.push_str(&format!("--- rendered {source}\n{text}"));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

fn lines(diags: Vec<render::Diagnostic>) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}

pub fn case_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .expect("tests/data exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn data_cases() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failed = Vec::new();
    let paths = case_files();
    assert!(paths.len() >= 10, "expected the cases under tests/data");
    for path in paths {
        let text = fs::read_to_string(&path).expect("readable case");
        let case = parse_case(&text);
        let actual = run(&case.header, &case.files);
        if actual != case.expected {
            if update {
                fs::write(&path, format!("{}=== expected\n{actual}", case.input)).expect("writable case");
            } else {
                failed.push(format!(
                    "--- {}\n--- expected:\n{}--- actual:\n{}",
                    path.display(),
                    case.expected,
                    actual
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as usize
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Bits of YAML and Tera syntax, and things that break it.
const NOISE: &[&str] = &[
    "{",
    "}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!",
    "!tag ",
    "#",
    "|",
    ">",
    "---\n",
    "...",
    "..",
    "/",
    "\t",
    "\u{0}",
    "é",
    "\u{202e}",
    "{% for x in pillar %}",
    "{% endfor %}",
    "{{ pillar.x }}",
    "{{ nope }}",
    "require",
    "- file: x",
    "sls",
    "0o777",
    "~",
    "? ",
    ",",
    "%",
];

fn garble(text: &str, rng: &mut Rng) -> String {
    let bounds: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
    let at = bounds[rng.below(bounds.len())];
    let (head, tail) = text.split_at(at);
    match rng.below(4) {
        0 => format!("{head}{}{tail}", NOISE[rng.below(NOISE.len())]),
        1 => {
            let skip = bounds.iter().copied().find(|&b| b > at + rng.below(8)).unwrap_or(text.len());
            format!("{head}{}", &text[skip..])
        }
        2 => format!("{head}{}{}", NOISE[rng.below(NOISE.len())], &text[at..]),
        _ => format!("{head}{head}{tail}").chars().take(20_000).collect(),
    }
}

/// Truncated and garbled versions of every file of every case give diagnostics (or a
/// plan), never a panic, never a panic caught by the library's guard.
#[test]
fn truncated_and_garbled_inputs_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    for path in case_files() {
        let case = parse_case(&fs::read_to_string(&path).expect("readable case"));
        for (file, contents) in &case.files {
            let bounds: Vec<usize> = (0..=contents.len()).filter(|&i| contents.is_char_boundary(i)).collect();
            let step = (bounds.len() / 25).max(1);
            let mut variants: Vec<String> =
                bounds.iter().step_by(step).map(|&b| contents[..b].to_string()).collect();
            variants.extend((0..25).map(|_| garble(contents, &mut rng)));
            variants
                .extend((0..5).map(|_| (0..40).map(|_| NOISE[rng.below(NOISE.len())]).collect::<String>()));
            for variant in variants {
                let mut files = case.files.clone();
                files.insert(file.clone(), variant.clone());
                let outcome = std::panic::catch_unwind(|| run(&case.header, &files));
                let ok = outcome.as_ref().is_ok_and(|out| !out.contains("internal error"));
                assert!(ok, "{}: {file} as {variant:?} gave {outcome:?}", path.display());
                runs += 1;
            }
        }
    }
    assert!(runs > 1000, "only {runs} runs");
}

/// A plan survives the trip to a minion.
#[test]
fn plans_round_trip_through_json() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/good_plan.txt");
    let case = parse_case(&fs::read_to_string(path).expect("readable case"));
    let repo = Repo::load(&case.files).expect("good repo");
    let minion = Minion { id: "w1".into(), peers: case.header.peers.clone(), ..Minion::default() };
    let plan = repo.plan(&case.files, &minion, &["worker", "datastore"]).expect("good plan");
    let json = serde_json::to_string(&plan).expect("serializes");
    assert!(json.contains(r#""function":{"daemon.running":{"name":"redis""#), "{json}");
    assert_eq!(serde_json::from_str::<Plan>(&json).expect("deserializes"), plan);
    let worker = plan.index_of(&render::ResourceRef { module: "daemon".into(), id: "worker".into() });
    let prerequisites: Vec<_> = plan.prerequisites(worker.expect("worker planned"));
    assert_eq!(prerequisites.len(), 2);
    assert!(prerequisites.iter().all(|&(_, i)| Some(i) < worker));
    assert_eq!(plan.daemons().into_iter().collect::<Vec<_>>(), ["redis", "worker"]);
    assert_eq!(plan.sources().into_iter().collect::<Vec<_>>(), ["states/coins/worker.toml"]);
}

//! Data-driven tests: each `tests/data/*.txt` holds a case's inputs and its expected output
//! side by side. `UPDATE_EXPECT=1 cargo test -p render` rewrites the expected sections
//! (review the diff before committing). The cases are also the seeds of the garbling tests
//! and of the property tests (`fuzz_*`: 256 cases each here, many more by `scripts/fuzz.sh`).
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

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};
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

/// One change to a file of a case, for the property tests below.
#[derive(Clone, Debug)]
enum Edit {
    /// Put a piece of [`NOISE`] at a place.
    Insert(Index, usize),
    /// Take up to so many characters out at a place.
    Remove(Index, usize),
    /// Cut the file at a place.
    Truncate(Index),
    /// Repeat a stretch of the file after itself.
    Repeat(Index, usize, usize),
    /// Replace a character with any other.
    Set(Index, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 0..NOISE.len()).prop_map(|(at, noise)| Edit::Insert(at, noise)),
        1 => (any::<Index>(), 1..24usize).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), 1..40usize, 1..20usize).prop_map(|(at, len, times)| Edit::Repeat(at, len, times)),
        1 => (any::<Index>(), any::<char>()).prop_map(|(at, c)| Edit::Set(at, c)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: &Index| i.index(chars.len() + 1);
    let mut out = chars.clone();
    match edit {
        Edit::Insert(i, noise) => {
            out.splice(at(i)..at(i), NOISE[*noise].chars());
        }
        Edit::Remove(i, n) => {
            out.drain(at(i)..(at(i) + n).min(chars.len()));
        }
        Edit::Truncate(i) => out.truncate(at(i)),
        Edit::Repeat(i, len, times) => {
            let stretch = chars[at(i)..(at(i) + len).min(chars.len())].repeat(*times);
            out.splice(at(i)..at(i), stretch);
        }
        Edit::Set(i, c) if !chars.is_empty() => out[i.index(chars.len())] = *c,
        Edit::Set(..) => {}
    }
    out.into_iter().collect()
}

/// What a property checks of one repository: `Repo::load` and `Repo::plan` (YAML and Tera)
/// give a plan or diagnostics, never a panic nor a panic caught by the library's guard, and
/// give the same answer twice (the master and the minion must render alike).
fn renders_sanely(header: &Header, files: &Files) -> Result<(), TestCaseError> {
    let out = run(header, files);
    prop_assert!(!out.contains("internal error"), "{}", out);
    prop_assert_eq!(run(header, files), out);
    Ok(())
}

/// The property tests' runner: `PROPTEST_CASES` cases (256 unless set; `scripts/fuzz.sh`
/// sets more), the failing input shrunk and shown.
fn fuzz(
    test: impl Fn(&Case, &String, String) -> Result<(), TestCaseError>,
    garble: impl Strategy<Value = Vec<Edit>>,
) {
    let cases: Vec<Case> =
        case_files().iter().map(|p| parse_case(&fs::read_to_string(p).expect("readable case"))).collect();
    let strategy = (0..cases.len(), any::<Index>(), garble);
    let mut runner = TestRunner::new(ProptestConfig::default());
    let outcome = runner.run(&strategy, |(case, file, edits)| {
        let case = &cases[case];
        let path = file.get(&case.files.keys().collect::<Vec<_>>()).to_string();
        let text = edits.iter().fold(case.files[&path].clone(), |text, edit| apply(&text, edit));
        test(case, &path, text)
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

/// Every file of every case, edited a few times over, as that case's file.
#[test]
fn fuzz_edited_files_give_diagnostics_or_a_plan() {
    fuzz(
        |case, path, text| {
            let mut files = case.files.clone();
            files.insert(path.clone(), text);
            renders_sanely(&case.header, &files)
        },
        prop::collection::vec(edit(), 1..8),
    );
}

/// An edited file of a case in another place: a state file as the top file, a role as a
/// template source, and so on.
#[test]
fn fuzz_files_in_the_wrong_place_give_diagnostics_or_a_plan() {
    fuzz(
        |case, path, text| {
            let mut files = case.files.clone();
            let elsewhere =
                files.keys().find(|p| *p != path).cloned().unwrap_or_else(|| "roles/top.yaml".into());
            files.insert(elsewhere, text);
            renders_sanely(&case.header, &files)
        },
        prop::collection::vec(edit(), 0..3),
    );
}

/// A plan survives the trip to a minion./// A plan survives the trip to a minion.
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

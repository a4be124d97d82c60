//! Names on the fleet network survive a rolling upgrade and a heal, on the real engine: a
//! probe in the fleet resolves the role names over and over through the engine's DNS (as a
//! program does, with glibc's `gethostbyname`) while `drover upgrade` swaps the containers
//! behind them and while the fleet heals a killed one, and never fails to resolve one of the
//! names drover promises (docs/fleet.md, "Names on the network"):
//!
//! - `web`: 2 replicas, stop-first, one at a time: the other replica answers meanwhile;
//! - `solo`: 1 replica, start-first: the old container answers to the role's name, its
//!   alias (`single`) and its slot's name until it is removed, by which time the new one
//!   answers too.
//!
//! Names drover does not promise (a stop-first role of one replica, a slot's name in a
//! stop-first swap or a heal) are not resolved here: they have a moment with no container,
//! and the engine asks the host's resolver about a name it does not know, which this test
//! must not make it do.

use std::path::Path;
use std::time::Duration;

use tests::docker::{Scope, addresses, base_yaml, docker, exec, required};
use tests::{ConfigRepo, Master, ok, show, wait_until, write_files};

/// The probe: resolves each name it is given, again and again (every 10 ms), through
/// glibc's resolver as programs do (`gethostbyname`), so through the engine's DNS. In
/// /tmp/probe: `pid`; `rounds`, the rounds done (every tenth); `failures`, a line `<round>
/// <name>` for each lookup that found nothing; `answers`, a line `<round> <name>
/// <addresses>` whenever a name's answer changed; `last/<name>`, its last answer.
const PROBE: &str = r#"#!/usr/bin/perl
use strict;
use warnings;
use Socket qw(inet_ntoa);

my $dir = "/tmp/probe";
mkdir $dir;
mkdir "$dir/last";
put("$dir/pid", "$$\n");
my %last;
for (my $round = 1; ; $round++) {
    for my $name (@ARGV) {
        my @found = gethostbyname($name);
        my %ips = map { inet_ntoa($_) => 1 } @found[4 .. $#found];
        my $now = join(" ", sort keys %ips);
        if ($now eq "") {
            add("$dir/failures", "$round $name\n");
        } elsif ($now ne ($last{$name} // "")) {
            $last{$name} = $now;
            put("$dir/last/$name", "$now\n");
            add("$dir/answers", "$round $name $now\n");
        }
    }
    put("$dir/rounds", "$round\n") if $round % 10 == 0;
    select(undef, undef, undef, 0.01);
}

sub put {
    my ($path, $text) = @_;
    open(my $f, ">", "$path.new") or die "$path.new: $!";
    print $f $text;
    close $f;
    rename("$path.new", $path) or die "$path: $!";
}

sub add {
    my ($path, $text) = @_;
    open(my $f, ">>", $path) or die "$path: $!";
    print $f $text;
    close $f;
}
"#;

fn image_dir(root: &Path, version: &str) -> std::path::PathBuf {
    let dir = root.join(format!("images-{version}")).join("app");
    write_files(
        &dir,
        &[
            ("Dockerfile", "FROM base\nCOPY probe /app/probe\nCOPY www /app/www\nRUN chmod 755 /app/probe\n"),
            ("probe", PROBE),
            ("www/index.html", &format!("version {version}\n")),
        ],
    );
    dir
}

fn fleet_yaml(fleet: &str) -> String {
    format!(
        "fleet: {fleet}\nimage: {fleet}-app\nversion: \"1\"\nroles:\n  \
         web: {{replicas: 2, update: {{batch: 1, order: stop-first, min_healthy: 1s}}}}\n  \
         solo: {{replicas: 1, aliases: [single], update: {{order: start-first, min_healthy: 1s}}}}\n  \
         probe: {{replicas: 1}}\n"
    )
}

const WEB_STATE: &str = "web:\n  daemon.running:\n    - cmd: [busybox, httpd, -f, -p, \"8080\", -h, /app/www]\n    \
                         - health: {tcp: \"127.0.0.1:8080\"}\n";

/// Reads the probe's state in its container.
struct Probe {
    container: String,
}

impl Probe {
    fn rounds(&self) -> u64 {
        exec(&self.container, "cat /tmp/probe/rounds 2>/dev/null || echo 0")
            .trim()
            .parse()
            .expect("a round count")
    }

    fn pid(&self) -> String {
        exec(&self.container, "cat /tmp/probe/pid").trim().to_string()
    }

    /// The names that failed to resolve after round `since`, with their rounds.
    fn failures_after(&self, since: u64) -> Vec<String> {
        exec(&self.container, "cat /tmp/probe/failures 2>/dev/null || true")
            .lines()
            .filter(|l| l.split(' ').next().and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r > since))
            .map(String::from)
            .collect()
    }

    /// The addresses `name` resolved to last, sorted; None before it ever resolved.
    fn answer(&self, name: &str) -> Option<Vec<String>> {
        let text = exec(&self.container, &format!("cat /tmp/probe/last/{name} 2>/dev/null || true"));
        let mut ips: Vec<String> = text.split_whitespace().map(String::from).collect();
        ips.sort();
        (!ips.is_empty()).then_some(ips)
    }

    /// Waits until the probe has done whole rounds after this call (so what it says covers
    /// everything that happened before); the rounds done then.
    fn catch_up(&self) -> u64 {
        let now = self.rounds();
        wait_until(Duration::from_secs(30), "the probe to go on", || self.rounds() > now + 10);
        self.rounds()
    }
}

/// The addresses of the slots' containers, sorted.
fn addresses_of(slots: &[String]) -> Vec<String> {
    let mut ips: Vec<String> = slots.iter().flat_map(|s| addresses(s)).collect();
    ips.sort();
    ips
}

fn container_id(name: &str) -> String {
    docker(&["inspect", "--format", "{{.Id}} {{.State.Running}}", name]).trim().to_string()
}

#[test]
fn role_names_resolve_through_a_rolling_upgrade_and_a_heal() {
    if !required() {
        return;
    }
    let scope = Scope::new("names");
    let f = scope.fleet.clone();
    let solo_slot = format!("{f}-solo-1");
    let probe_state =
        format!("probe:\n  daemon.running:\n    - cmd: [/app/probe, web, solo, single, {solo_slot}]\n");
    let repo = ConfigRepo::new();
    repo.commit(
        "a fleet and a probe of its names",
        &[
            ("fleet.yaml", &fleet_yaml(&f)),
            ("roles/web.yaml", "states: [app.web]\n"),
            ("roles/solo.yaml", "states: [app.web]\n"),
            // started once web and solo have members, so it never asks for a name no
            // container has yet
            ("roles/probe.yaml", "states: [app.probe]\nrequires: [web, solo]\n"),
            ("states/app/web.yaml", WEB_STATE),
            ("states/app/probe.yaml", &probe_state),
            ("images/base/base.yaml", &base_yaml()),
        ],
    );
    let master = Master::start_for_containers(repo.path());
    let images = tempfile::tempdir().unwrap();
    for version in ["1", "2"] {
        let dir = image_dir(images.path(), version);
        let tag = format!("{f}-app:{version}");
        let out = master.drover(&["image", "build", dir.to_str().unwrap(), "--tag", &tag]);
        assert!(out.status.success(), "image build {tag}: {}", show(&out));
    }
    ok(&master.drover(&["up", "--timeout", "120"]));

    let probe = Probe { container: format!("{f}-probe-1") };
    let names = ["web", "solo", "single", solo_slot.as_str()];
    wait_until(Duration::from_secs(60), "the probe to resolve every name", || {
        names.iter().all(|n| probe.answer(n).is_some())
    });
    let pid = probe.pid();
    let web = [format!("{f}-web-1"), format!("{f}-web-2")];
    let solo = [solo_slot.clone()];

    // a rolling upgrade: web stop-first one slot at a time, solo start-first
    let since = probe.catch_up();
    let solo_before = probe.answer("solo").unwrap();
    assert_eq!(solo_before, addresses_of(&solo));
    let out = master.drover(&["upgrade", "web", "solo", "--to", "2"]);
    ok(&out);
    let upgraded = master.ps();
    let versions: Vec<(&str, &str)> =
        upgraded.iter().map(|s| (s["slot"].as_str().unwrap(), s["version"].as_str().unwrap())).collect();
    for slot in web.iter().chain(&solo) {
        assert!(versions.contains(&(slot.as_str(), "2")), "{slot} at 2: {versions:?}");
    }
    let until = probe.catch_up();
    eprintln!(
        "the upgrade: {} rounds of {} names; the probe's answers:\n{}",
        until - since,
        names.len(),
        exec(&probe.container, "cat /tmp/probe/answers")
    );
    assert_eq!(
        probe.failures_after(since),
        Vec::<String>::new(),
        "names that did not resolve in the upgrade"
    );
    assert_eq!(probe.pid(), pid, "the probe ran all along");
    // it followed the swaps: the names answer with the new containers now (the new solo
    // started beside the old one, so it has another address)
    assert_eq!(probe.answer("web").unwrap(), addresses_of(&web));
    for name in ["solo", "single", solo_slot.as_str()] {
        assert_eq!(probe.answer(name).unwrap(), addresses_of(&solo), "{name}");
    }
    assert_ne!(probe.answer("solo").unwrap(), solo_before, "solo's new container answers");

    // a heal: web-1 killed, replaced in its slot; web-2 answers meanwhile
    let since = probe.catch_up();
    let killed = container_id(&web[0]);
    assert!(killed.ends_with(" true"), "{killed}");
    docker(&["kill", &web[0]]);
    wait_until(Duration::from_secs(90), "web-1 replaced and ready", || {
        let now = container_id(&web[0]);
        now != killed
            && now.ends_with(" true")
            && master
                .ps()
                .iter()
                .any(|s| s["slot"] == web[0].as_str() && s["connected"] == true && s["health"] == "healthy")
    });
    wait_until(Duration::from_secs(30), "the probe to resolve web to the new web-1", || {
        probe.answer("web") == Some(addresses_of(&web))
    });
    let until = probe.catch_up();
    eprintln!("the heal: {} rounds of {} names", until - since, names.len());
    assert_eq!(probe.failures_after(since), Vec::<String>::new(), "names that did not resolve in the heal");
    assert_eq!(probe.pid(), pid, "the probe ran all along");

    ok(&master.drover(&["down", "--volumes"]));
}

//! `drover-bench`: measures drover with its real binaries and a minion swarm, optionally
//! side by side with Salt, and prints Markdown tables (see bench/RESULTS.md).

use std::path::PathBuf;
use std::time::Duration;

use bench::{demo, fleet, fleet_swarm, measure, salt, states, swarm, table};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about, version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure drover (and Salt with --salt) and print the tables
    Run {
        /// Swarm sizes to measure test.ping at
        #[arg(long, value_delimiter = ',', default_value = "50,1000")]
        sizes: Vec<usize>,
        /// Minions for the role-apply benchmark (0: skip the state benchmarks)
        #[arg(long, default_value_t = 50)]
        state_minions: usize,
        /// Real drover-minion processes to measure with (0: none)
        #[arg(long, default_value_t = 50)]
        real: usize,
        /// Repetitions per timing
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// test.ping jobs to run on one real minion, reading the master's RSS after 1,000,
        /// 10,000 and 20,000 of them (0: skip)
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Where the drover binaries are [default: the folder of this binary]
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The master's port for the run (the key port is +1)
        #[arg(long, default_value_t = 24506)]
        port: u16,
        /// Also run Salt's baseline at N minions (installs Salt into a temp venv)
        #[arg(long, value_name = "N")]
        salt: Option<usize>,
        /// The Salt baseline script, for --salt (run from the root of the repository, the
        /// default is the one in bench/)
        #[arg(long, value_name = "PATH", default_value = "bench/salt-baseline.sh")]
        salt_script: PathBuf,
        /// Also write Salt's own table to this file
        #[arg(long)]
        salt_out: Option<PathBuf>,
        /// Compare with Salt tables saved before (--salt-out, bench/salt-state50.sh);
        /// several files, comma-separated, are merged (with --salt, the new run wins)
        #[arg(long, value_delimiter = ',')]
        salt_table: Vec<PathBuf>,
    },
    /// Measure the container fleet on the local Docker engine, beside docker-compose
    Fleet {
        /// Repetitions of the slot swap and heal timings
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where the drover binaries are [default: the folder of this binary]
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The repository whose images/base/base.yaml makes the base image
        #[arg(long, default_value = ".")]
        repo_root: PathBuf,
        /// The master's port for the run
        #[arg(long, default_value_t = 24606)]
        port: u16,
    },
    /// Measure the fleet on a one-node Docker Swarm (made and left by the run) beside the
    /// local engine: up of 10 slots, a 10-slot rollout
    FleetSwarm {
        /// Where the drover binaries are [default: the folder of this binary]
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The repository whose images/base/base.yaml makes the base image
        #[arg(long, default_value = ".")]
        repo_root: PathBuf,
        /// The master's port for the run
        #[arg(long, default_value_t = 24706)]
        port: u16,
    },
    /// Measure the demo cloud (`drover demo`, a warm wipe-and-restart), beside
    /// docker-compose running the same containers
    Demo {
        /// Remove every image drover made on this engine first, so the base is built too
        #[arg(long)]
        cold: bool,
        /// Repetitions of the wipe-and-restart, each side
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Where the drover binaries are [default: the folder of this binary]
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The drover clone to take the cloud from (images/coins/bin/<version>/coins built)
        #[arg(long, default_value = ".")]
        repo_root: PathBuf,
    },
    /// Run a swarm of simulated minions against a master until interrupted
    Swarm {
        #[arg(long, value_name = "HOST:PORT")]
        master: String,
        /// The master's public key (Z85), or a path to master.pub
        #[arg(long)]
        master_key: String,
        #[arg(short, long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value = "swarm")]
        prefix: String,
        /// The number of the first minion (ids are `<prefix><number, 5 digits>`)
        #[arg(long, default_value_t = 1)]
        first: usize,
        /// Print `connected N` on stdout whenever the count changes (for a parent drover-bench)
        #[arg(long)]
        report: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Run {
            sizes,
            state_minions,
            real,
            runs,
            jobs,
            bin_dir,
            port,
            salt: salt_n,
            salt_script,
            salt_out,
            salt_table,
        } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?.parent().expect("bin dir").to_path_buf(),
            };
            let mut figures = table::Figures::default();
            eprintln!("drover ({}):", bin_dir.display());
            measure::run(
                &measure::Options {
                    bin_dir: bin_dir.clone(),
                    swarm_sizes: sizes,
                    real_minions: real,
                    runs,
                    port,
                    jobs,
                },
                &mut figures,
            )?;
            if state_minions > 0 {
                states::run(
                    &states::Options { bin_dir, minions: state_minions, runs, port: port + 10 },
                    &mut figures,
                )?;
            }
            let mut salt_figures = std::collections::BTreeMap::new();
            for path in &salt_table {
                salt_figures.extend(salt::parse(&std::fs::read_to_string(path)?));
            }
            if let Some(n) = salt_n {
                if !salt_script.exists() {
                    anyhow::bail!(
                        "{} is missing: run drover-bench from the root of the repository, or give --salt-script",
                        salt_script.display()
                    );
                }
                salt_figures.extend(salt::run(&salt_script, n, salt_out.as_deref())?);
            }
            let salt = (!salt_figures.is_empty()).then_some(salt_figures);
            table::print(&figures, salt.as_ref());
        }
        Cmd::Fleet { runs, bin_dir, repo_root, port } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?.parent().expect("bin dir").to_path_buf(),
            };
            let rows = fleet::run(&fleet::Options { bin_dir, repo_root, port, runs })?;
            fleet::print(&rows);
        }
        Cmd::FleetSwarm { bin_dir, repo_root, port } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?.parent().expect("bin dir").to_path_buf(),
            };
            let rows = fleet_swarm::run(&fleet::Options { bin_dir, repo_root, port, runs: 1 })?;
            fleet_swarm::print(&rows);
        }
        Cmd::Demo { cold, runs, bin_dir, repo_root } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?.parent().expect("bin dir").to_path_buf(),
            };
            let repo_root = repo_root.canonicalize()?;
            let rows = demo::run(&demo::Options { bin_dir, repo_root, cold, runs })?;
            fleet::print(&rows);
        }
        Cmd::Swarm { master, master_key, count, prefix, first, report } => {
            let key = match wire::PublicKey::parse(&master_key) {
                Ok(k) => k,
                Err(_) => wire::PublicKey::read(std::path::Path::new(&master_key))?,
            };
            let cfg = swarm::SwarmConfig {
                master,
                master_key: key,
                count,
                prefix,
                first,
                heartbeat: Duration::from_secs(5),
            };
            let s = swarm::Swarm::start(&cfg)?;
            if report {
                s.report();
            }
            let took = s.wait_connected(count, Duration::from_secs(600))?;
            eprintln!("{count} minions connected in {:.0} ms; Ctrl-C to stop", took.as_secs_f64() * 1000.0);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
    Ok(())
}

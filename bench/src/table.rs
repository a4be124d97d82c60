//! Figures and the side-by-side table.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Figures {
    pub rows: Vec<(String, f64, String)>,
}

impl Figures {
    pub fn add(&mut self, name: &str, value: f64, unit: &str) {
        eprintln!("  {name:<36} {value:>12.2} {unit}");
        self.rows.push((name.to_string(), value, unit.to_string()));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.0 == name).map(|r| r.1)
    }
}

/// A comparison row: drover's figure, Salt's (converted to drover's unit), and what
/// "better" means.
pub struct Compare {
    pub label: &'static str,
    pub drover: &'static str,
    pub salt: &'static str,
    /// Multiply Salt's value by this to get drover's unit (e.g. s → ms: 1000).
    pub salt_scale: f64,
    pub target: &'static str,
}

pub const COMPARISONS: &[Compare] = &[
    Compare {
        label: "masterless apply, 50 resources, idempotent (a cold process each)",
        drover: "state50_local_idempotent_p50",
        salt: "salt_call_state50_idempotent_median",
        salt_scale: 1000.0,
        target: ">= 50x faster",
    },
    Compare {
        label: "masterless apply, 50 resources, first run",
        drover: "state50_local_first",
        salt: "salt_call_state50_first",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "state.apply, 50 resources, one minion, idempotent (a running minion against salt-call)",
        drover: "state50_apply_idempotent_p50",
        salt: "salt_call_state50_idempotent_median",
        salt_scale: 1000.0,
        target: ">= 50x faster",
    },
    Compare {
        label: "state.apply, 2 states, 50 minions, idempotent",
        drover: "state_apply_50_minions_idempotent_p50",
        salt: "state_apply_run2",
        salt_scale: 1000.0,
        target: ">= 100x faster",
    },
    Compare {
        label: "a change applied, 2 states, 50 minions",
        drover: "roles_apply_change_50_minions_to_converged",
        salt: "state_apply_run1",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "test.ping, 50 real minions (median)",
        drover: "real_50_test_ping_p50",
        salt: "test_ping_median",
        salt_scale: 1000.0,
        target: ">= 100x faster",
    },
    Compare {
        label: "cmd.run /bin/true, 50 real minions",
        drover: "real_50_cmd_run_p50",
        salt: "cmd_run_all",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "cmd.run 'echo a b c | wc -w' (a shell pipeline), 50 real minions",
        drover: "real_50_cmd_run_pipeline_p50",
        salt: "cmd_run_pipeline",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "cmd.run, batch 10%, 50 real minions",
        drover: "real_50_cmd_run_batch_10pct_p50",
        salt: "cmd_run_batch_10pct",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "50 real minions: start to all answering",
        drover: "real_50_start_to_all_connected",
        salt: "minions_all_up_manage_up",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "minion RSS, mean of 50",
        drover: "real_50_minion_rss_mean",
        salt: "minions_rss_per_minion_idle",
        salt_scale: 1.0,
        target: "< 8 MiB",
    },
    Compare {
        label: "test.ping, swarm N=50 (median)",
        drover: "test_ping_50_p50",
        salt: "test_ping_median",
        salt_scale: 1000.0,
        target: ">= 100x faster",
    },
    Compare {
        label: "CLI start (--version)",
        drover: "cli_version_p50",
        salt: "cli_salt_version_median",
        salt_scale: 1000.0,
        target: "",
    },
    Compare {
        label: "idle minion RSS",
        drover: "minion_idle_rss",
        salt: "minion_one_rss_idle",
        salt_scale: 1.0,
        target: "< 8 MiB",
    },
    Compare {
        label: "master RSS, N=50",
        drover: "master_rss_50_connected",
        salt: "master_rss_sum_idle",
        salt_scale: 1.0,
        target: "",
    },
    Compare {
        label: "all N=50 minions connected",
        drover: "swarm_50_connect_all",
        salt: "minions_keys_accepted",
        salt_scale: 1000.0,
        target: "",
    },
];

/// Prints drover's figures, then the comparison with Salt when there is one, as Markdown.
pub fn print(figures: &Figures, salt: Option<&BTreeMap<String, f64>>) {
    println!("| figure | drover | unit |");
    println!("|---|---:|---|");
    for (name, value, unit) in &figures.rows {
        println!("| {name} | {value:.2} | {unit} |");
    }
    let Some(salt) = salt else { return };
    println!();
    println!("| side by side | drover | Salt | Salt / drover | target |");
    println!("|---|---:|---:|---:|---|");
    for c in COMPARISONS {
        let (Some(d), Some(s)) = (figures.get(c.drover), salt.get(c.salt)) else { continue };
        let s = s * c.salt_scale;
        let unit = figures.rows.iter().find(|r| r.0 == c.drover).map(|r| r.2.as_str()).unwrap_or("");
        println!("| {} | {d:.2} {unit} | {s:.2} {unit} | {:.0}x | {} |", c.label, s / d.max(1e-9), c.target);
    }
}

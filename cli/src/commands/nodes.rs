//! `drover nodes`: the nodes the fleet runs on, what it reserves on each, and its headroom.

use clap::Args;

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

const HELP: &str = "\
One row per node: the one Docker engine with `engine: local`, every node of the swarm with
`engine: swarm`. For each: its name, role (manager or worker), availability, the fleet's
containers running there and all containers running there (FLEET/ALL), its CPUs and
memory, the sum of the reservations (`resources.reservations` in fleet.yaml) of the
fleet's slots placed there (on Swarm, `+` what other services' tasks reserve there), and
what is left free.

Then the headroom: could the fleet lose its largest node (the one with the most reserved)
and still fit that node's slots on the other nodes, each where its role's constraints hold,
under its max_per_node, within the CPUs and memory not reserved there? On one engine the
answer is always no: there is one node.

`--out json` prints an object with engine, fleet, nodes (id, name, role, availability,
ready, labels, slots, containers, containers_total, cpus, memory, reserved_cpus,
reserved_memory, others_cpus, others_memory, free_cpus, free_memory; memory in bytes) and headroom (ok, verdict,
largest, unplaced): a stable contract for scripts.

Exit status: 0 the fleet could lose its largest node; 1 it could not (the verdict says
which slots would fit nowhere).

Examples:
  drover nodes
  drover nodes --out json | jq '.nodes[] | {name, free_cpus}'";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct NodesArgs {}

/// `1.5G`, `512M`: bytes for people.
fn size(bytes: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("k", 1 << 10)];
    for (unit, n) in units {
        if bytes >= n {
            let v = bytes as f64 / n as f64;
            return if v >= 10.0 || (v - v.round()).abs() < 0.05 {
                format!("{:.0}{unit}", v)
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    bytes.to_string()
}

/// `0.5`, `2`: CPUs without trailing zeros.
fn cpus(n: f64) -> String {
    let text = format!("{n:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn run(_args: NodesArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let report = ctx.client()?.fleet_nodes().map_err(api_error)?;
    let text = match ctx.out() {
        Out::Json => output::json(&report)?,
        Out::Yaml => output::yaml(&report)?,
        Out::Text | Out::Highstate => {
            let rows: Vec<Vec<String>> = report
                .nodes
                .iter()
                .map(|n| {
                    let availability = if n.ready {
                        n.availability.clone()
                    } else {
                        format!("{} (not ready)", n.availability)
                    };
                    vec![
                        n.name.clone(),
                        n.role.clone(),
                        availability,
                        format!("{}/{}", n.containers, n.containers_total),
                        // the fleet's, and the others' after a `+` when they reserve any
                        match n.others_cpus > 0.0 {
                            true => {
                                format!("{}+{}/{}", cpus(n.reserved_cpus), cpus(n.others_cpus), cpus(n.cpus))
                            }
                            false => format!("{}/{}", cpus(n.reserved_cpus), cpus(n.cpus)),
                        },
                        cpus(n.free_cpus),
                        match n.others_memory > 0 {
                            true => {
                                format!(
                                    "{}+{}/{}",
                                    size(n.reserved_memory),
                                    size(n.others_memory),
                                    size(n.memory)
                                )
                            }
                            false => format!("{}/{}", size(n.reserved_memory), size(n.memory)),
                        },
                        size(n.free_memory),
                    ]
                })
                .collect();
            let mut text = output::table(
                &[
                    "NODE",
                    "ROLE",
                    "AVAILABILITY",
                    "FLEET/ALL",
                    "CPU RESERVED",
                    "CPU FREE",
                    "MEM RESERVED",
                    "MEM FREE",
                ],
                &rows,
            );
            let fleet = report
                .fleet
                .as_deref()
                .map_or_else(|| "no fleet is up".to_string(), |f| format!("fleet {f}"));
            text.push_str(&format!(
                "{fleet} on {} engine; can lose its largest node: {}\n",
                if report.engine == "swarm" { "the Swarm" } else { "the local" },
                report.headroom.verdict
            ));
            text
        }
    };
    ctx.print(&text)?;
    Ok(if report.headroom.ok { Exit::Success } else { Exit::Failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus_read_short() {
        assert_eq!(size(25_276_510_208), "24G");
        assert_eq!(size(3 << 29), "1.5G");
        assert_eq!(size(256 << 20), "256M");
        assert_eq!(size(0), "0");
        assert_eq!(cpus(0.5), "0.5");
        assert_eq!(cpus(2.0), "2");
        assert_eq!(cpus(0.25), "0.25");
    }
}

//! benchmarks: minion swarm and timing tables, side by side with Salt

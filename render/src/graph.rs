//! A stable topological order, and the cycles that prevent one.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Order nodes `0..n` so that for every `(before, after)` edge `before` comes first; among
/// the nodes that are ready, the smallest index goes first (indices are the tie-break rank).
///
/// On failure, returns the cycles: each lists its nodes so that every node depends on the
/// next (its `before`), the last on the first, starting at the cycle's smallest node.
pub(crate) fn order(n: usize, edges: &[(usize, usize)]) -> Result<Vec<usize>, Vec<Vec<usize>>> {
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    for &(b, a) in edges {
        after[b].push(a);
        before[a].push(b);
        waiting[a] += 1;
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut ordered = Vec::with_capacity(n);
    while let Some(Reverse(node)) = ready.pop() {
        ordered.push(node);
        for &next in &after[node] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    if ordered.len() == n {
        return Ok(ordered);
    }

    // Every node left waits on another node left: walking back along `before` edges from
    // any of them must come round to a node already on the walk.
    let left: Vec<bool> = (0..n).map(|i| waiting[i] > 0).collect();
    let mut walked = vec![false; n];
    let mut cycles = Vec::new();
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    for start in (0..n).filter(|&i| left[i]) {
        if walked[start] {
            continue;
        }
        let mut path = vec![start];
        walked[start] = true;
        loop {
            let current = path[path.len() - 1];
            let Some(&prev) = before[current].iter().filter(|&&p| left[p]).min() else { break };
            if let Some(at) = path.iter().position(|&p| p == prev) {
                let mut cycle = path.split_off(at);
                let smallest = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                cycle.rotate_left(smallest);
                let mut key = cycle.clone();
                key.sort_unstable();
                if seen.insert(key) {
                    cycles.push(cycle);
                }
                break;
            }
            if walked[prev] {
                break; // leads into a cycle already reported
            }
            walked[prev] = true;
            path.push(prev);
        }
    }
    Err(cycles)
}

#[cfg(test)]
mod tests {
    use super::order;

    #[test]
    fn orders_by_edges_then_index() {
        assert_eq!(order(4, &[(3, 0), (2, 1)]).unwrap(), [2, 1, 3, 0]);
        assert_eq!(order(3, &[]).unwrap(), [0, 1, 2]);
    }

    #[test]
    fn names_each_cycle_once() {
        // 0 needs 1 needs 2 needs 0; 3 needs 0 (downstream, not in the cycle); 4 needs itself.
        let edges = [(1, 0), (2, 1), (0, 2), (0, 3), (4, 4)];
        assert_eq!(order(5, &edges).unwrap_err(), vec![vec![0, 1, 2], vec![4]]);
    }
}

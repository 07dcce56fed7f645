//! Dependencies between containers: which declarations cannot start because of their
//! `depends_on` (unknown names, cycles, `healthy` on a container without a
//! healthcheck), and the order in which to stop them (dependents first).
//!
//! Pure functions over names, unit-tested without any process.

use crate::spec::{ContainerName, Dependency, DependencyCondition};
use std::collections::{BTreeMap, BTreeSet};

/// What the dependency check needs to know of one valid declaration.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its dependencies.
    pub depends_on: Vec<Dependency>,
    /// Whether it declares a healthcheck (needed by `condition = "healthy"`).
    pub has_healthcheck: bool,
}

/// The problems of each container whose dependencies cannot be met, keyed by name.
/// A container that depends (directly or not) on a broken one is not broken itself:
/// it waits, and `keelctl ps` shows what it waits for.
pub fn problems(nodes: &BTreeMap<ContainerName, Node>, invalid: &BTreeSet<ContainerName>) -> BTreeMap<ContainerName, String> {
    let mut found = BTreeMap::new();
    for (name, node) in nodes {
        for dep in &node.depends_on {
            let key = format!("depends_on.{}", dep.name);
            match nodes.get(&dep.name) {
                None if invalid.contains(&dep.name) => {}
                None => {
                    found.insert(name.clone(), format!("{key}: no container {} is declared", dep.name));
                }
                Some(target) if dep.condition == DependencyCondition::Healthy && !target.has_healthcheck => {
                    found.insert(name.clone(), format!("{key}: condition \"healthy\" but {} declares no [healthcheck]", dep.name));
                }
                Some(_) => {}
            }
        }
    }
    for cycle in cycles(nodes) {
        let text: Vec<&str> = cycle.iter().map(ContainerName::as_str).collect();
        let message = format!("depends_on: dependency cycle {} -> {}", text.join(" -> "), text[0]);
        for name in cycle {
            found.insert(name, message.clone());
        }
    }
    found
}

/// Every dependency cycle, each as its members in order, starting from its smallest name.
pub fn cycles(nodes: &BTreeMap<ContainerName, Node>) -> Vec<Vec<ContainerName>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    fn visit(
        name: &ContainerName,
        nodes: &BTreeMap<ContainerName, Node>,
        marks: &mut BTreeMap<ContainerName, Mark>,
        stack: &mut Vec<ContainerName>,
        out: &mut Vec<Vec<ContainerName>>,
    ) {
        marks.insert(name.clone(), Mark::OnStack);
        stack.push(name.clone());
        for dep in nodes.get(name).map(|n| n.depends_on.as_slice()).unwrap_or_default() {
            match marks.get(&dep.name).copied() {
                Some(Mark::Unvisited) => visit(&dep.name, nodes, marks, stack, out),
                Some(Mark::OnStack) => {
                    let start = stack.iter().position(|n| *n == dep.name).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    let smallest = cycle.iter().enumerate().min_by_key(|(_, n)| (*n).clone()).map_or(0, |(i, _)| i);
                    cycle.rotate_left(smallest);
                    out.push(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        marks.insert(name.clone(), Mark::Done);
    }
    let mut marks: BTreeMap<ContainerName, Mark> = nodes.keys().map(|n| (n.clone(), Mark::Unvisited)).collect();
    let mut out = Vec::new();
    for name in nodes.keys() {
        if marks.get(name) == Some(&Mark::Unvisited) {
            visit(name, nodes, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The order to stop containers in: every container before the ones it depends on.
/// Containers in a cycle (which never started) come last, by name.
pub fn stop_order(nodes: &BTreeMap<ContainerName, Node>) -> Vec<ContainerName> {
    start_order(nodes).into_iter().rev().collect()
}

/// A start order: every container after the ones it depends on (ties by name).
pub fn start_order(nodes: &BTreeMap<ContainerName, Node>) -> Vec<ContainerName> {
    let mut placed: BTreeSet<ContainerName> = BTreeSet::new();
    let mut order = Vec::new();
    loop {
        let next: Vec<ContainerName> = nodes
            .iter()
            .filter(|(name, _)| !placed.contains(*name))
            .filter(|(_, node)| node.depends_on.iter().all(|d| placed.contains(&d.name) || !nodes.contains_key(&d.name)))
            .map(|(name, _)| name.clone())
            .collect();
        if next.is_empty() {
            break;
        }
        placed.extend(next.iter().cloned());
        order.extend(next);
    }
    // Cycle members, which never start, go last so the order still names everyone.
    order.extend(nodes.keys().filter(|n| !placed.contains(*n)).cloned());
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> ContainerName {
        ContainerName::new(n).unwrap()
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<ContainerName, Node> {
        edges
            .iter()
            .map(|(n, deps)| {
                let depends_on = deps.iter().map(|d| Dependency { name: name(d), condition: DependencyCondition::Started }).collect();
                (name(n), Node { depends_on, has_healthcheck: false })
            })
            .collect()
    }

    fn names(list: &[ContainerName]) -> Vec<&str> {
        list.iter().map(ContainerName::as_str).collect()
    }

    #[test]
    fn start_order_puts_dependencies_first_and_stop_order_reverses_it() {
        let g = graph(&[("web", &["db", "cache"]), ("db", &[]), ("cache", &["db"]), ("lone", &[])]);
        assert_eq!(names(&start_order(&g)), ["db", "lone", "cache", "web"]);
        assert_eq!(names(&stop_order(&g)), ["web", "cache", "lone", "db"]);
        assert!(problems(&g, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_cycle_is_named_on_each_member_and_others_are_untouched() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"]), ("e", &[])]);
        assert_eq!(cycles(&g), vec![vec![name("a"), name("b"), name("c")]]);
        let found = problems(&g, &BTreeSet::new());
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[&name("b")], "depends_on: dependency cycle a -> b -> c -> a");
        assert!(!found.contains_key(&name("d")) && !found.contains_key(&name("e")));
        let order = start_order(&g);
        assert_eq!(names(&order[..1]), ["e"]);
        assert_eq!(order.len(), 5);
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let g = graph(&[("a", &["a"])]);
        assert_eq!(problems(&g, &BTreeSet::new())[&name("a")], "depends_on: dependency cycle a -> a");
    }

    #[test]
    fn unknown_and_invalid_dependencies() {
        let g = graph(&[("web", &["ghost"]), ("api", &["broken"])]);
        let invalid: BTreeSet<ContainerName> = [name("broken")].into();
        let found = problems(&g, &invalid);
        assert_eq!(found[&name("web")], "depends_on.ghost: no container ghost is declared");
        assert!(!found.contains_key(&name("api")), "a dependency on a bad declaration waits, it is not an error");
    }

    #[test]
    fn healthy_needs_a_healthcheck() {
        let mut g = graph(&[("web", &[]), ("db", &[])]);
        g.get_mut(&name("web")).unwrap().depends_on = vec![Dependency { name: name("db"), condition: DependencyCondition::Healthy }];
        assert!(problems(&g, &BTreeSet::new())[&name("web")].contains("declares no [healthcheck]"));
        g.get_mut(&name("db")).unwrap().has_healthcheck = true;
        assert!(problems(&g, &BTreeSet::new()).is_empty());
    }
}

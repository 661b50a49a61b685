//! Step dependency graphs: validation (unknown steps, cycles) and readiness.

use std::collections::{HashMap, HashSet};

use crate::error::Error;

/// Checks that every dependency names a step of the graph and that there is no cycle.
/// `edges` maps a step key to the keys it depends on. Errors name the offending step.
pub fn validate(keys: &[&str], edges: &HashMap<&str, Vec<&str>>) -> Result<(), Error> {
    let known: HashSet<&str> = keys.iter().copied().collect();
    for key in keys {
        for dep in edges.get(key).into_iter().flatten() {
            if !known.contains(dep) {
                return Err(Error::invalid_field(
                    "depends_on",
                    format!("step `{key}` depends on `{dep}`, which is not a step of this task"),
                ));
            }
            if dep == key {
                return Err(Error::invalid_field(
                    "depends_on",
                    format!("step `{key}` depends on itself"),
                ));
            }
        }
    }
    // Depth-first search with colours; the first back edge names a step on the cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        Active,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = keys.iter().map(|key| (*key, Mark::Unvisited)).collect();
    for start in keys {
        if marks[start] != Mark::Unvisited {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Active);
        while let Some((node, next_idx)) = stack.pop() {
            let deps = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(dep) = deps.get(next_idx) {
                stack.push((node, next_idx + 1));
                match marks[dep] {
                    Mark::Active => {
                        let cycle: Vec<&str> = stack
                            .iter()
                            .map(|(key, _)| *key)
                            .skip_while(|key| key != dep)
                            .collect();
                        return Err(Error::invalid_field(
                            "depends_on",
                            format!("dependencies form a cycle: {} -> {dep}", cycle.join(" -> ")),
                        ));
                    }
                    Mark::Unvisited => {
                        marks.insert(dep, Mark::Active);
                        stack.push((dep, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks.insert(node, Mark::Done);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(
        pairs: &[(&'a str, &[&'a str])],
    ) -> (Vec<&'a str>, HashMap<&'a str, Vec<&'a str>>) {
        let keys = pairs.iter().map(|(key, _)| *key).collect();
        let edges = pairs
            .iter()
            .map(|(key, deps)| (*key, deps.to_vec()))
            .collect();
        (keys, edges)
    }

    #[test]
    fn a_diamond_is_fine() {
        let (keys, edges) = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        validate(&keys, &edges).unwrap();
    }

    #[test]
    fn a_cycle_is_named() {
        let (keys, edges) = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let err = validate(&keys, &edges).unwrap_err();
        assert_eq!(err.code(), "invalid");
        assert!(
            err.to_string()
                .starts_with("dependencies form a cycle: a -> c -> b -> a"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_self_dependencies_are_named() {
        let (keys, edges) = graph(&[("draft", &[]), ("review", &["drafts"])]);
        let err = validate(&keys, &edges).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step `review` depends on `drafts`, which is not a step of this task"
        );
        let (keys, edges) = graph(&[("a", &["a"])]);
        assert_eq!(
            validate(&keys, &edges).unwrap_err().to_string(),
            "step `a` depends on itself"
        );
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let names: Vec<String> = (0..20_000).map(|idx| format!("s{idx}")).collect();
        let keys: Vec<&str> = names.iter().map(String::as_str).collect();
        let edges = keys
            .windows(2)
            .map(|pair| (pair[1], vec![pair[0]]))
            .collect();
        validate(&keys, &edges).unwrap();
    }
}

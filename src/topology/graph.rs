//! Checks that the configured components form a sound data-flow graph.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, ConfigError, Kind, Location};

/// One component as the graph sees it.
struct Node<'a> {
    kind: Kind,
    type_name: &'a str,
    inputs: &'a [String],
    location: &'a Location,
}

fn nodes(config: &Config) -> BTreeMap<&str, Node<'_>> {
    let mut nodes = BTreeMap::new();
    for (name, c) in &config.sources {
        nodes.insert(
            name.as_str(),
            Node {
                kind: Kind::Source,
                type_name: &c.type_name,
                inputs: &c.inputs,
                location: &c.location,
            },
        );
    }
    for (name, c) in &config.transforms {
        nodes.insert(
            name.as_str(),
            Node {
                kind: Kind::Transform,
                type_name: &c.type_name,
                inputs: &c.inputs,
                location: &c.location,
            },
        );
    }
    for (name, c) in &config.sinks {
        nodes.insert(
            name.as_str(),
            Node {
                kind: Kind::Sink,
                type_name: &c.type_name,
                inputs: &c.inputs,
                location: &c.location,
            },
        );
    }
    nodes
}

/// Every topology problem: unknown or invalid inputs, cycles, components
/// with no inputs, components nothing reads, and a graph with no source or
/// no sink.
pub fn check(config: &Config) -> Vec<ConfigError> {
    let nodes = nodes(config);
    let mut errors = Vec::new();
    let at = |loc: &Location, msg: String| ConfigError {
        location: Some(loc.clone()),
        file: None,
        message: msg,
    };

    if config.sources.is_empty() {
        errors.push(ConfigError::general(
            "no sources are configured: add a [sources.NAME] table",
        ));
    }
    if config.sinks.is_empty() {
        errors.push(ConfigError::general(
            "no sinks are configured: add a [sinks.NAME] table",
        ));
    }

    let mut read_by: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, node) in &nodes {
        let path = format!("{}.{name}", node.kind.table());
        if node.kind != Kind::Source && node.inputs.is_empty() {
            errors.push(at(
                node.location,
                format!("{path} has no inputs: list the components it reads from in `inputs`"),
            ));
        }
        let mut seen = BTreeSet::new();
        for input in node.inputs {
            if !seen.insert(input.as_str()) {
                errors.push(at(
                    node.location,
                    format!("{path} lists input `{input}` twice"),
                ));
                continue;
            }
            match nodes.get(input.as_str()) {
                None => errors.push(at(
                    node.location,
                    format!(
                        "{path} reads from `{input}`, but no source or transform has that name{}",
                        suggestion(input, nodes.keys().copied())
                    ),
                )),
                Some(upstream) if upstream.kind == Kind::Sink => errors.push(at(
                    node.location,
                    format!("{path} reads from `{input}`, which is a sink; sinks have no output"),
                )),
                Some(_) if input == name => errors.push(at(
                    node.location,
                    format!("{path} lists itself as an input"),
                )),
                Some(_) => *read_by.entry(input.as_str()).or_default() += 1,
            }
        }
    }

    for (name, node) in &nodes {
        if node.kind != Kind::Sink && !read_by.contains_key(name) {
            errors.push(at(
                node.location,
                format!(
                    "{}.{name} is not read by any transform or sink; its events would go nowhere",
                    node.kind.table()
                ),
            ));
        }
    }

    if let Some(cycle) = find_cycle(&nodes) {
        let first = &nodes[cycle[0]];
        errors.push(at(
            first.location,
            format!(
                "transforms form a cycle: {} -> {}",
                cycle.join(" -> "),
                cycle[0]
            ),
        ));
    }
    errors
}

/// Depth-first search over transform inputs; returns one cycle if any.
fn find_cycle<'a>(nodes: &BTreeMap<&'a str, Node<'a>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        nodes: &BTreeMap<&'a str, Node<'a>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                return Some(stack[start..].to_vec());
            }
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        stack.push(name);
        if let Some(node) = nodes.get(name) {
            for input in node.inputs {
                if let Some((key, _)) = nodes.get_key_value(input.as_str())
                    && input != name
                    && let Some(cycle) = visit(key, nodes, marks, stack)
                {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in nodes.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(name, nodes, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

/// "; did you mean `x`?" when a known name is one or two edits away.
fn suggestion<'a>(wanted: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (edit_distance(wanted, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// One line describing the topology, for `validate` and the start-up log:
/// `2 sources, 1 transform, 1 sink: in(stdin) -> drop_noise(filter) -> out(file)`.
pub fn summary(config: &Config) -> String {
    let nodes = nodes(config);
    let count = |kind: Kind, one: &str, many: &str| {
        let n = nodes.values().filter(|n| n.kind == kind).count();
        format!("{n} {}", if n == 1 { one } else { many })
    };
    let list = |kind: Kind| {
        nodes
            .iter()
            .filter(|(_, n)| n.kind == kind)
            .map(|(name, n)| format!("{name}({})", n.type_name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut stages = vec![list(Kind::Source)];
    if !config.transforms.is_empty() {
        stages.push(list(Kind::Transform));
    }
    stages.push(list(Kind::Sink));
    format!(
        "{}, {}, {}: {}",
        count(Kind::Source, "source", "sources"),
        count(Kind::Transform, "transform", "transforms"),
        count(Kind::Sink, "sink", "sinks"),
        stages.join(" -> ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("redact", "redcat"), 2);
        assert_eq!(edit_distance("in", "inn"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

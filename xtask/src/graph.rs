//! `cargo xtask check-graph`: the layer graph of the finn crates, checked against `cargo metadata`.
//!
//! Lower crates never depend on higher ones. The allowed edges are listed once, here; any other
//! dependency between finn crates (normal, dev or build) fails the check.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::shell;

/// Each finn crate and the finn crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("finn-wal", &[]),
    ("finn-breaker", &[]),
    ("finn-identity", &[]),
    ("finn-scheduler", &["finn-breaker"]),
    ("finn-checkpoint", &["finn-wal", "finn-breaker"]),
    ("finn-recovery", &["finn-wal", "finn-checkpoint"]),
    ("finn-beads", &["finn-wal", "finn-recovery"]),
    ("finn-learning", &["finn-wal"]),
    (
        "finn",
        &[
            "finn-wal",
            "finn-checkpoint",
            "finn-recovery",
            "finn-breaker",
            "finn-scheduler",
            "finn-beads",
            "finn-learning",
            "finn-identity",
        ],
    ),
    // The benchmark crate measures everything, so it may depend on every crate.
    (
        "finn-benches",
        &[
            "finn",
            "finn-wal",
            "finn-checkpoint",
            "finn-recovery",
            "finn-breaker",
            "finn-scheduler",
            "finn-beads",
            "finn-learning",
            "finn-identity",
        ],
    ),
];

pub(crate) fn run() -> Result<()> {
    let output = shell::cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata is not JSON")?;
    let violations = violations(&metadata)?;
    if violations.is_empty() {
        println!("check-graph: every finn crate depends only on the crates below it");
        return Ok(());
    }
    for v in &violations {
        eprintln!("check-graph: {v}");
    }
    bail!(
        "{} dependency edge(s) outside the layer graph",
        violations.len()
    )
}

/// Every edge between finn crates that [`ALLOWED`] does not list, as human-readable lines.
fn violations(metadata: &Value) -> Result<Vec<String>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no `packages` array")?;
    let finn: BTreeSet<&str> = packages
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| n.starts_with("finn"))
        .collect();
    let mut found = Vec::new();
    for package in packages {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        if !finn.contains(name) {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, deps)| *deps);
        let deps = package["dependencies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for dep in deps {
            let Some(dep_name) = dep["name"].as_str() else {
                continue;
            };
            if !finn.contains(dep_name) {
                continue;
            }
            match allowed {
                None => found.push(format!(
                    "{name} is not in the layer graph but depends on {dep_name}"
                )),
                Some(ok) if !ok.contains(&dep_name) => {
                    let kind = dep["kind"].as_str().unwrap_or("normal");
                    found.push(format!(
                        "{name} -> {dep_name} ({kind} dependency) is not allowed"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn package(name: &str, deps: &[(&str, Option<&str>)]) -> Value {
        let deps: Vec<Value> = deps
            .iter()
            .map(|(d, kind)| json!({ "name": d, "kind": kind }))
            .collect();
        json!({ "name": name, "dependencies": deps })
    }

    #[test]
    fn the_real_graph_passes() {
        let metadata = json!({ "packages": [
            package("finn-wal", &[("crc32fast", None)]),
            package("finn-breaker", &[]),
            package("finn-checkpoint", &[("finn-wal", None), ("finn-breaker", None)]),
            package("finn-recovery", &[("finn-wal", None), ("finn-checkpoint", None)]),
            package("finn-beads", &[("finn-wal", None), ("finn-recovery", None)]),
        ]});
        assert_eq!(violations(&metadata).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_upward_edge_fails() {
        let metadata = json!({ "packages": [
            package("finn-wal", &[("finn-checkpoint", None)]),
            package("finn-checkpoint", &[("finn-wal", None)]),
        ]});
        let found = violations(&metadata).unwrap();
        assert_eq!(
            found,
            vec!["finn-wal -> finn-checkpoint (normal dependency) is not allowed"]
        );
    }

    #[test]
    fn a_dev_dependency_outside_the_graph_fails_too() {
        let metadata = json!({ "packages": [
            package("finn-identity", &[("finn-wal", Some("dev"))]),
            package("finn-wal", &[]),
        ]});
        let found = violations(&metadata).unwrap();
        assert_eq!(
            found,
            vec!["finn-identity -> finn-wal (dev dependency) is not allowed"]
        );
    }

    #[test]
    fn an_unknown_finn_crate_with_finn_dependencies_fails() {
        let metadata = json!({ "packages": [
            package("finn-extra", &[("finn-wal", None)]),
            package("finn-wal", &[]),
        ]});
        assert_eq!(violations(&metadata).unwrap().len(), 1);
    }
}

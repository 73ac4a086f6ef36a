//! The `unreachable` findings: one per root that stopped answering (see [`crate::fs::watch`]),
//! with the number of files under it that were not checked.

use super::Checker;
use crate::model::{Fault, Finding, Repair};
use std::sync::atomic::Ordering;

/// One `unreachable` finding per root that stopped answering: at setup (a mapped root whose
/// listing hung) or during the scan (the watchdog gave up on it), with the files not checked.
pub(crate) fn unreachable_findings(checker: &Checker) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding = |container: Option<String>, host: &std::path::Path, why: &str, n: u64| Finding {
        asset_id: None,
        owner_id: None,
        file: None,
        db_path: container,
        host_path: Some(host.to_string_lossy().into_owned()),
        fault: Fault::Unreachable,
        found_at: None,
        repair: Repair::None,
        detail: format!(
            "{} does not answer: {why}; {n} referenced files under it were not checked \
                 (the report is incomplete). Check the share (mount, server, network) and \
                 scan again",
            host.display()
        ),
        affected: Some(n),
        relink_to: None,
    };
    for m in checker.roots.missing.iter().filter(|m| m.hung) {
        let n = m.affected.load(Ordering::Relaxed);
        out.push(finding(Some(m.container.clone()), &m.host, &m.why, n));
    }
    for r in checker.roots.all() {
        if !r.health.is_unreachable() {
            continue;
        }
        let why = r
            .health
            .why
            .lock()
            .map(|w| w.clone().unwrap_or_default())
            .unwrap_or_default();
        let container = checker
            .map
            .entries()
            .iter()
            .find(|e| e.host == r.host)
            .map(|e| e.container.clone());
        let n = r.health.not_checked.load(Ordering::Relaxed);
        out.push(finding(container, &r.host, &why, n));
    }
    out
}

//! The admin listener's `/metrics`: a parser for the Prometheus text
//! exposition, a lookup by name and labels, and a wait for a series to reach
//! a value (counters that Pingora updates when it logs a request land just
//! after the answer went out).

use std::collections::BTreeMap;

use super::client::client;
use super::process::Streamgate;
use super::wait::eventually;

/// Scrapes `/metrics` into `series -> value`, where a series is
/// `name{label="value",…}` exactly as exposed.
pub async fn scrape(gate: &Streamgate) -> BTreeMap<String, f64> {
    let text = client()
        .get(gate.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_exposition(&text)
}

/// Parses the Prometheus text exposition: comments and blank lines skipped,
/// each sample line split at its last space into series and value.
pub fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the series named `name` whose labels include all of `labels`.
pub fn metric(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| *value)
        .sum()
}

/// Scrapes and looks up one metric: [`scrape`] then [`metric`].
pub async fn metric_now(gate: &Streamgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&scrape(gate).await, name, labels)
}

/// Waits until the metric `name{labels}` satisfies `wanted`; whether it did
/// within [`EVENTUALLY`](super::wait::EVENTUALLY).
pub async fn metric_reaches(
    gate: &Streamgate,
    name: &str,
    labels: &[(&str, &str)],
    wanted: impl Fn(f64) -> bool,
) -> bool {
    eventually(|| async { wanted(metric_now(gate, name, labels).await) }).await
}

//! Reading a Prometheus text-format scrape.

use std::collections::BTreeSet;

/// The value of one sample line (`name{labels}` exactly, or a bare name) in a scrape, 0 when absent.
pub fn metric_value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The sum of every sample of a family whose labels contain all `must_contain` strings.
pub fn metric_sum_of(scrape: &str, family: &str, must_contain: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Every series name a scrape exports: the sample names, plus, from the `# TYPE` lines, the
/// suffixed names of counters and histograms (so a query may use either spelling).
pub fn exported_metric_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                names.insert(name.to_owned());
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[],
                };
                for s in suffixes {
                    names.insert(format!("{name}{s}"));
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

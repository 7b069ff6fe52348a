//! The Grafana dashboard, the chart's alerts and the README's metrics table only name metrics
//! hookguard really exports: a renamed or dropped family breaks this test instead of leaving a
//! panel that shows "No data" or an alert that can never fire.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hookguard::metrics::{ControllerMetrics, ViolationLabels, WebhookMetrics, encode};
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

const DASHBOARD: &str = "charts/hookguard/dashboards/hookguard.json";
const DASHBOARD_COPY: &str = "deploy/grafana/hookguard-dashboard.json";
const ALERTS: &str = "charts/hookguard/templates/prometheusrule.yaml";

/// A metric family as exported: its `# TYPE` name and type.
struct Family {
    name: String,
    kind: String,
}

fn families() -> Vec<Family> {
    // What the two processes export together: `serve` and `controller`. The re-check's gauge
    // has no zero series (a violation needs its labels): give it the one of a re-check pass.
    let controller = ControllerMetrics::new(true);
    controller.recheck.publish(
        [ViolationLabels {
            rule: "image-tag",
            namespace: "shop".into(),
            from: "release",
            effect: "warn",
            when_enforced: "deny",
        }],
        0,
    );
    let text = encode(&WebhookMetrics::new(true).registry) + &encode(&controller.registry);
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut it = rest.split_whitespace();
            Some(Family {
                name: it.next()?.to_owned(),
                kind: it.next()?.to_owned(),
            })
        })
        .collect()
}

/// Every series name a query may use: the family names plus the sample names the text format
/// derives from them (`_total` for counters, `_bucket`/`_sum`/`_count` for histograms).
fn exported_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in families() {
        let suffixes: &[&str] = match f.kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["_sum", "_count"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{}{s}", f.name));
        }
        names.insert(f.name);
    }
    names
}

/// `hookguard_*` and `process_*` identifiers in PromQL, ignoring quoted strings (label values
/// such as `job=~"hookguard"` are not metric names).
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in promql.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                unquoted.push(' ');
            }
            None if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                unquoted.push(' ');
            }
            None => unquoted.push(c),
        }
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    unquoted
        .split(|c: char| !is_ident(c))
        .filter(|w| w.starts_with("hookguard_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Names used but not exported, as a sorted list for the failure message.
fn missing(used: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    used.difference(exported).cloned().collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&repo_file(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (panel title, expr) of every query target.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?} has a target without expr"));
                (title.clone(), expr.to_owned())
            })
        })
        .collect()
}

/// The PromQL of the template variables (`label_values(<selector>, label)`).
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_default();
            (format!("variable {}", v["name"]), q.to_owned())
        })
        .collect()
}

#[test]
fn dashboard_copies_are_identical() {
    assert!(
        repo_file(DASHBOARD) == repo_file(DASHBOARD_COPY),
        "{DASHBOARD_COPY} differs from {DASHBOARD}: run scripts/render-deploy.sh"
    );
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    let exported = exported_names();
    let dash = dashboard();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (title, expr) in dashboard_exprs(&dash)
        .into_iter()
        .chain(variable_queries(&dash))
    {
        let names = metric_names(&expr);
        if names.is_empty() {
            problems.push(format!("{title}: no hookguard metric in {expr:?}"));
        }
        for name in missing(&names, &exported) {
            problems.push(format!("{title}: {name} is not exported"));
        }
        used.extend(names);
    }
    assert!(
        problems.is_empty(),
        "dashboard queries:\n  {}\nexported by neither `serve` nor `controller`: {:?}",
        problems.join("\n  "),
        missing(&used, &exported)
    );
    // What the dashboard is for: each of these has a panel.
    for want in [
        "hookguard_hook_created_total",
        "hookguard_hook_deleted_total",
        "hookguard_hook_objects",
        "hookguard_hook_oldest_finished_age_seconds",
        "hookguard_hook_job_outcomes_total",
        "hookguard_hook_job_duration_seconds_bucket",
        "hookguard_hook_orphans",
        "hookguard_rule_findings_total",
        "hookguard_admission_duration_seconds_bucket",
        "hookguard_admission_requests_total",
        "hookguard_tls_cert_expiry_timestamp_seconds",
        "hookguard_tls_ca_expiry_timestamp_seconds",
        "hookguard_janitor_deletions_total",
    ] {
        assert!(used.contains(want), "no dashboard panel uses {want}");
    }
}

#[test]
fn dashboard_is_portable() {
    let dash = dashboard();
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    let ds = var("datasource");
    assert!(
        ds["type"] == "datasource" && ds["query"] == "prometheus",
        "datasource variable: {ds}"
    );
    let ns = var("namespace");
    let ns_query = ns["query"]["query"].as_str().unwrap_or_default();
    assert!(
        ns_query.starts_with("label_values(hookguard_hook_objects")
            && ns_query.ends_with(", namespace)"),
        "namespace variable query: {ns_query}"
    );
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_i64()),
            "duplicate panel id in {title:?}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_i64().unwrap_or(-1), g["w"].as_i64().unwrap_or(-1));
        assert!(
            x >= 0 && w > 0 && x + w <= 24 && g["h"].as_i64().is_some_and(|h| h > 0),
            "panel {title:?}: gridPos {g}"
        );
        if p["type"] == "row" {
            continue;
        }
        // A fixed datasource uid would break the import into any other Grafana.
        assert!(
            p["datasource"]["uid"] == "${datasource}",
            "panel {title:?}: datasource {}",
            p["datasource"]
        );
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                t["datasource"]["uid"] == "${datasource}",
                "panel {title:?}: target datasource {}",
                t["datasource"]
            );
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or_default().to_owned()),
                "panel {title:?}: duplicate or missing refId"
            );
        }
    }
    // Every query is scoped to the selected installation.
    for (title, expr) in dashboard_exprs(&dash) {
        assert!(
            expr.contains("job=~\"$job\""),
            "{title}: {expr} ignores the job variable"
        );
    }
}

/// `expr:` texts of the PrometheusRule template, template actions removed.
fn alert_exprs(template: &str) -> Vec<String> {
    let lines: Vec<&str> = template.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        let text = if rest.starts_with('|') || rest.starts_with('>') {
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            rest.to_owned()
        };
        exprs.push(strip_actions(&text));
    }
    exprs
}

fn strip_actions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => rest = &rest[start + end + 2..],
            None => panic!("unterminated template action in {text:?}"),
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn alerts_use_only_exported_metrics() {
    let exported = exported_names();
    let template = repo_file(ALERTS);
    let exprs = alert_exprs(&template);
    let alerts = template
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(
        alerts > 0 && exprs.len() == alerts,
        "{alerts} alerts but {} expr: texts found",
        exprs.len()
    );
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "alert expression without a metric: {expr}"
        );
        used.extend(names);
    }
    // Names outside `expr:` too: PromQL built in template variables and the descriptions.
    used.extend(
        metric_names(&template.replace(['"', '`', '\''], " "))
            .into_iter()
            .filter(|n| n.starts_with("hookguard_")),
    );
    let absent = missing(&used, &exported);
    assert!(
        absent.is_empty(),
        "{ALERTS} uses metrics neither `serve` nor `controller` exports: {absent:?}"
    );
    for want in [
        "hookguard_tls_cert_expiry_timestamp_seconds",
        "hookguard_tls_ca_expiry_timestamp_seconds",
        "hookguard_cert_reconciles_total",
        "hookguard_inventory_up",
        "hookguard_hook_oldest_finished_age_seconds",
        "hookguard_hook_job_outcomes_total",
        "hookguard_hook_orphans",
        "hookguard_admission_requests_total",
        "hookguard_admission_duration_seconds_bucket",
    ] {
        assert!(used.contains(want), "no alert uses {want}");
    }
}

/// README's "Metrics" section documents every family exported, and nothing else.
#[test]
fn readme_documents_every_metric_family() {
    let readme = repo_file("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has a \"## Metrics\" section");
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("hookguard_"))
        .map(str::to_owned)
        .collect();
    let exported: BTreeSet<String> = families()
        .into_iter()
        .filter(|f| f.name.starts_with("hookguard_"))
        .map(|f| match f.kind.as_str() {
            "counter" => format!("{}_total", f.name),
            _ => f.name,
        })
        .collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "README.md Metrics table: undocumented families {undocumented:?}; documented but not exported {stale:?}"
    );
    for f in families()
        .into_iter()
        .filter(|f| f.name.starts_with("process_"))
    {
        let name = if f.kind == "counter" {
            format!("{}_total", f.name)
        } else {
            f.name
        };
        assert!(
            section.contains(&format!("`{name}`")),
            "README.md Metrics section does not mention {name}"
        );
    }
}

#[test]
fn metric_name_extraction() {
    // The helpers above decide what the other tests check: they must find names in every
    // position PromQL allows and nothing inside strings.
    let names = metric_names(
        r#"sum by (le) (rate(hookguard_a_bucket{job=~"hookguard_not_a_metric"}[5m])) / process_b_total and on(x) hookguard_c"#,
    );
    let want: BTreeSet<String> = ["hookguard_a_bucket", "process_b_total", "hookguard_c"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, want);
    let exprs = alert_exprs(
        "        - alert: A\n          expr: |-\n            rate(hookguard_x_total{ {{- $sel -}} }[5m])\n              > {{ $cfg.t }}\n          for: 5m\n        - alert: B\n          expr: hookguard_y{ {{- $sel -}} } > 0\n",
    );
    assert_eq!(exprs.len(), 2, "{exprs:?}");
    assert!(exprs[0].contains("rate(hookguard_x_total{  }[5m])") && !exprs[0].contains("for:"));
    assert_eq!(
        metric_names(&exprs[1]),
        BTreeSet::from(["hookguard_y".to_owned()])
    );
}

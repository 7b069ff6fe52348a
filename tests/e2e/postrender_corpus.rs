//! Do no harm, proven against Kubernetes' own YAML reader and real Helm 4 on public charts.
//!
//! - The table of YAML cases (tests/fixtures/yaml) that the engine's unit tests hold hookguard's
//!   reader to is what k8s.io/apimachinery's decoder (`yamljson`, built from the same module as
//!   the API server) answers, case by case.
//! - Every chart of the corpus (tests/e2e/charts/corpus, written in the style of popular public
//!   charts with hooks; the `helm4 create` scaffold; and, with `HOOKGUARD_CHART_CORPUS`, a corpus
//!   of public charts kept outside the repository) is rendered by real Helm 4 twice: through a post-renderer that changes nothing (`cat`) and
//!   through hookguard's. Read by Kubernetes' decoder, the two renders are the same objects, in
//!   the same order, except the fixes hookguard means to make on hook objects (listed below);
//!   the documents of objects that are not hooks are byte for byte the same; hookguard's reader
//!   decodes both renders exactly as Kubernetes' does; and every post-rendered hook object passes
//!   a server-side dry run wherever the one Helm rendered alone does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::plugin_scenarios::path_with_hookguard;
use crate::proc::{Result, ensure, out_text};
use crate::tools::repo;
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    (
        "22-yaml-table-is-what-kubernetes-reads",
        yaml_table_is_what_kubernetes_reads,
    ),
    (
        "23-postrender-changes-nothing-but-its-fixes",
        corpus_changes_nothing_but_the_fixes,
    ),
];

/// Decodes YAML texts with Kubernetes' reader: for each text, its documents or its error.
fn kubernetes_reads(
    env: &Env,
    texts: &[&str],
) -> Result<Vec<std::result::Result<Vec<Value>, String>>> {
    let input = serde_json::to_string(texts).map_err(|e| e.to_string())?;
    let out = env.cluster.run_ok("yamljson", &[], Some(&input))?;
    let results: Vec<Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("yamljson printed no JSON: {e}"))?;
    ensure(results.len() == texts.len(), || {
        format!(
            "yamljson answered {} of {} texts",
            results.len(),
            texts.len()
        )
    })?;
    Ok(results
        .into_iter()
        .map(|r| match (&r["docs"], &r["error"]) {
            (Value::Array(docs), _) => Ok(docs.clone()),
            (_, Value::String(e)) => Err(e.clone()),
            // An empty stream: no documents.
            _ => Ok(Vec::new()),
        })
        .collect())
}

fn yaml_table_is_what_kubernetes_reads(env: &Env) -> Result<()> {
    let path = repo().join("tests/fixtures/yaml/kubernetes-reads-yaml.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let inputs: Vec<&str> = table
        .iter()
        .map(|c| c["yaml"].as_str().unwrap_or_default())
        .collect();
    let answers = kubernetes_reads(env, &inputs)?;
    let mut wrong = Vec::new();
    for (case, answer) in table.iter().zip(answers) {
        let ok = match (&case["docs"], &answer) {
            (Value::Array(expected), Ok(docs)) => expected == docs,
            (Value::Null, Err(_)) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!("{}: Kubernetes reads {answer:?}", case["case"]));
        }
    }
    ensure(wrong.is_empty(), || {
        format!(
            "the YAML table disagrees with k8s.io/apimachinery:\n{}",
            wrong.join("\n")
        )
    })?;
    eprintln!(
        "e2e: {} YAML cases read as Kubernetes reads them",
        table.len()
    );
    Ok(())
}

/// One chart of a corpus (`corpus.yaml`: name, `chart` or `archive`, `values`, `namespace`,
/// `deterministic`).
struct Chart {
    name: String,
    /// A chart directory or a packaged chart.
    archive: PathBuf,
    values: Option<PathBuf>,
    namespace: String,
    /// Whether two renders give the same objects (charts that generate secrets or names with
    /// Sprig's random functions do not).
    deterministic: bool,
}

fn read_corpus(dir: &Path) -> Result<Vec<Chart>> {
    let index = dir.join("corpus.yaml");
    let text = std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
    let entries = hookguard::yaml::decode_document(&text).map_err(|e| e.to_string())?;
    entries
        .as_array()
        .ok_or("corpus.yaml is not a list")?
        .iter()
        .map(|e| {
            let field = |f: &str| e[f].as_str().map(str::to_owned);
            let chart = field("chart").or_else(|| field("archive"));
            Ok(Chart {
                name: field("name").ok_or("an entry without name")?,
                archive: dir.join(chart.ok_or("an entry without chart")?),
                values: field("values").map(|v| dir.join(v)),
                namespace: field("namespace").unwrap_or_else(|| "default".to_owned()),
                deterministic: e["deterministic"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

/// The suite's own corpus, the `helm4 create` scaffold (made in `work`), and the charts of
/// `HOOKGUARD_CHART_CORPUS` when it is set (a corpus of public charts kept outside the repo).
fn corpus(env: &Env, work: &Path) -> Result<Vec<Chart>> {
    let mut charts = read_corpus(&repo().join("tests/e2e/charts/corpus"))?;
    let scaffold = work.join("scaffold");
    env.cluster
        .run_ok("helm4", &["create", &scaffold.display().to_string()], None)?;
    charts.push(Chart {
        name: "helm-create".to_owned(),
        archive: scaffold,
        values: None,
        namespace: "scaffold".to_owned(),
        deterministic: true,
    });
    if let Some(dir) = std::env::var_os("HOOKGUARD_CHART_CORPUS") {
        let public = read_corpus(Path::new(&dir))?;
        eprintln!("e2e: HOOKGUARD_CHART_CORPUS adds {} charts", public.len());
        charts.extend(public);
    }
    Ok(charts)
}

/// The policy the corpus is rendered with: every rule keeps its mode, except that rules which
/// deny only warn, so every chart renders and the fixes of all of them are compared. (What the
/// default policy denies is checked separately.)
const CORPUS_POLICY: &str = "rules:\n  hook-event-unknown: warn\n  delete-policy-unknown: warn\n  hook-weight-invalid: warn\n  hook-kind-long-running: warn\n  pod-security: warn\n";

/// Charts the built-in policy must never break (DESIGN.md; all but the scaffold are public charts,
/// checked when `HOOKGUARD_CHART_CORPUS` holds them).
const NEVER_BROKEN: &[&str] = &[
    "kyverno",
    "gatekeeper",
    "cert-manager",
    "ingress-nginx",
    "helm-create",
];

/// Where an object's fix may change it, and only there: (path, what the value may become).
fn allowed_change(kind: &str, path: &[String], after: Option<&Value>) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (kind, p.as_slice()) {
        (_, ["metadata", "labels"]) => {
            after == Some(&serde_json::json!({"hookguard.io/hook": "true"}))
        }
        (_, ["metadata", "labels", "hookguard.io/hook"]) => after == Some(&Value::from("true")),
        (_, ["metadata", "annotations", "helm.sh/hook-delete-policy"]) => {
            after == Some(&Value::from("before-hook-creation"))
        }
        (_, ["metadata", "annotations", "helm.sh/hook-output-log-policy"]) => {
            after == Some(&Value::from("hook-failed"))
        }
        (_, ["metadata", "annotations", "hookguard.io/mutated"]) => {
            after.is_some_and(Value::is_string)
        }
        ("Job", ["spec", "ttlSecondsAfterFinished"]) => {
            after.and_then(Value::as_i64).is_some_and(|t| t >= 60)
        }
        ("Job", ["spec", "template", "spec", "restartPolicy"])
        | ("Pod", ["spec", "restartPolicy"]) => after == Some(&Value::from("Never")),
        _ => false,
    }
}

/// Every leaf where `a` and `b` differ: (path, value in `b`).
fn differences(
    a: &Value,
    b: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<Value>)>,
) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                path.push(k.clone());
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => differences(va, vb, path, out),
                    (_, vb) => out.push((path.clone(), vb.cloned())),
                }
                path.pop();
            }
        }
        _ if a == b => {}
        _ => out.push((path.clone(), Some(b.clone()))),
    }
}

fn identity(o: &Value) -> String {
    format!(
        "{} {} {}/{}",
        o["apiVersion"].as_str().unwrap_or_default(),
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn is_hook(o: &Value) -> bool {
    o["metadata"]["annotations"]["helm.sh/hook"].is_string()
}

fn render(
    env: &Env,
    chart: &Chart,
    post_renderer: &str,
    config: &Path,
    capture: Option<(&Path, &Path)>,
) -> std::process::Output {
    let archive = chart.archive.display().to_string();
    let values = chart.values.as_ref().map(|v| v.display().to_string());
    let mut args = vec![
        "template",
        "r",
        &archive,
        "-n",
        &chart.namespace,
        "--kube-version",
        "1.36.0",
        "--post-renderer",
        post_renderer,
    ];
    if let Some(v) = &values {
        args.extend(["-f", v]);
    }
    let path = path_with_hookguard();
    let config = config.display().to_string();
    let mut vars = vec![("PATH", path.clone()), ("HOOKGUARD_CONFIG", config)];
    if let Some((input, output)) = capture {
        vars.push(("HOOKGUARD_CAPTURE_IN", input.display().to_string()));
        vars.push(("HOOKGUARD_CAPTURE_OUT", output.display().to_string()));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.cluster.run_env("helm4", &vars, &args)
}

/// The names of the objects of `yaml` a server-side dry run creates (`kubectl create -o name`).
fn dry_run_creates(env: &Env, namespace: &str, yaml: &str) -> BTreeSet<String> {
    let out = env.cluster.run(
        "kubectl",
        &[
            "create",
            "--dry-run=server",
            "-o",
            "name",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        Some(yaml),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn corpus_changes_nothing_but_the_fixes(env: &Env) -> Result<()> {
    for name in [
        "hookguard-postrender",
        "noop-postrender",
        "capture-postrender",
    ] {
        let _ = env
            .cluster
            .run("helm4", &["plugin", "uninstall", name], None);
    }
    for dir in [
        repo().join("plugins/hookguard-postrender"),
        repo().join("tests/e2e/plugins/noop-postrender"),
        repo().join("tests/e2e/plugins/capture-postrender"),
    ] {
        env.cluster.run_ok(
            "helm4",
            &["plugin", "install", &dir.display().to_string()],
            None,
        )?;
    }
    let work = std::env::temp_dir().join(format!("hookguard-e2e-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let corpus_policy = work.join("corpus-policy.yaml");
    let default_policy = work.join("default-policy.yaml");
    std::fs::write(&corpus_policy, CORPUS_POLICY).map_err(|e| e.to_string())?;
    std::fs::write(&default_policy, "").map_err(|e| e.to_string())?;

    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for chart in corpus(env, &work)? {
        match check_chart(env, &chart, &work, &corpus_policy, &default_policy) {
            Ok(line) => summary.push(line),
            Err(e) => failures.push(format!("{}: {e}", chart.name)),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    for line in &summary {
        eprintln!("e2e: corpus {line}");
    }
    ensure(failures.is_empty(), || failures.join("\n\n"))
}

/// Compares two decoded streams object by object: the same objects in the same order, changed
/// only where a fix may change a hook (objects named in `skip` are not compared: their content is
/// random). Returns (objects, hooks, fixed hooks).
fn same_but_fixes(
    before: &[Value],
    after: &[Value],
    skip: &BTreeSet<usize>,
) -> Result<(usize, usize, usize)> {
    let before: Vec<&Value> = before.iter().filter(|d| d.is_object()).collect();
    let after: Vec<&Value> = after.iter().filter(|d| d.is_object()).collect();
    ensure(before.len() == after.len(), || {
        format!(
            "{} objects without hookguard, {} with",
            before.len(),
            after.len()
        )
    })?;
    let (mut hooks, mut fixed) = (0, 0);
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if is_hook(a) {
            hooks += 1;
        }
        // Random content (a generated name, too) differs between two renders anyway.
        if skip.contains(&i) {
            continue;
        }
        ensure(identity(a) == identity(b), || {
            format!("{} became {}", identity(a), identity(b))
        })?;
        let mut diffs = Vec::new();
        differences(a, b, &mut Vec::new(), &mut diffs);
        if diffs.is_empty() {
            continue;
        }
        ensure(is_hook(a), || {
            format!("{} is not a hook, yet changed: {diffs:?}", identity(a))
        })?;
        let kind = a["kind"].as_str().unwrap_or_default();
        for (path, value) in &diffs {
            ensure(allowed_change(kind, path, value.as_ref()), || {
                format!(
                    "{}: {} became {value:?}, which no fix changes",
                    identity(a),
                    path.join(".")
                )
            })?;
        }
        fixed += 1;
    }
    Ok((before.len(), hooks, fixed))
}

/// Reads both texts with Kubernetes' decoder and with hookguard's, which must agree.
fn read_both(env: &Env, texts: [&str; 2], what: &str) -> Result<[Vec<Value>; 2]> {
    let answers = kubernetes_reads(env, &texts)?;
    let mut out: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for (i, (answer, text)) in answers.into_iter().zip(texts).enumerate() {
        let docs = answer.map_err(|e| format!("Kubernetes cannot read {what} #{i}: {e}"))?;
        let ours = hookguard::yaml::decode_stream(text)
            .map_err(|e| format!("hookguard cannot read {what} #{i}: {e}"))?;
        if ours != docs {
            let at = ours.iter().zip(docs.iter()).position(|(a, b)| a != b);
            return Err(format!(
                "hookguard reads {what} #{i} differently from Kubernetes (document {at:?} of {}/{})",
                ours.len(),
                docs.len()
            ));
        }
        out[i] = docs;
    }
    Ok(out)
}

/// The texts of the object documents of a stream that are hooks (`hooks`) or are not, leaving
/// out those at the object indices in `skip` (random content), in order.
fn documents(text: &str, hooks: bool, skip: &BTreeSet<usize>) -> Result<Vec<String>> {
    let chunks = hookguard::yaml::split_stream(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut object = 0;
    for c in chunks {
        let value = hookguard::yaml::decode_document(c.text).map_err(|e| e.to_string())?;
        if !value.is_object() {
            continue;
        }
        if is_hook(&value) == hooks && !skip.contains(&object) {
            out.push(c.text.to_owned());
        }
        object += 1;
    }
    Ok(out)
}

/// The documents of objects that are not hooks.
fn plain_documents(text: &str, skip: &BTreeSet<usize>) -> Result<Vec<String>> {
    documents(text, false, skip)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks one chart; a line for the summary.
fn check_chart(
    env: &Env,
    chart: &Chart,
    work: &Path,
    corpus_policy: &Path,
    default_policy: &Path,
) -> Result<String> {
    let ok = |out: std::process::Output, what: &str| -> Result<String> {
        ensure(out.status.success(), || {
            format!("helm4 template ({what}) failed: {}", out_text(&out))
        })?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let noop = ok(
        render(env, chart, "noop-postrender", corpus_policy, None),
        "no-op post-renderer",
    )?;
    let (raw_in, raw_out) = (
        work.join(format!("{}.in", chart.name)),
        work.join(format!("{}.out", chart.name)),
    );
    let fixed = ok(
        render(
            env,
            chart,
            "capture-postrender",
            corpus_policy,
            Some((&raw_in, &raw_out)),
        ),
        "hookguard's post-renderer",
    )?;
    let (raw_in, raw_out) = (read(&raw_in)?, read(&raw_out)?);

    // Objects whose content is random differ between two renders anyway: found by rendering
    // again, and compared only within one render (below, what the post-renderer got and gave).
    let [first, second] = if chart.deterministic {
        [Vec::new(), Vec::new()]
    } else {
        let again = ok(
            render(env, chart, "noop-postrender", corpus_policy, None),
            "no-op, again",
        )?;
        read_both(env, [&noop, &again], "two no-op renders")?
    };
    let objects =
        |docs: &[Value]| -> Vec<Value> { docs.iter().filter(|d| d.is_object()).cloned().collect() };
    let random: BTreeSet<usize> = objects(&first)
        .iter()
        .zip(&objects(&second))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();

    // The post-renderer itself, within one render: what Helm handed it and what it handed back.
    let [given, returned] = read_both(
        env,
        [&raw_in, &raw_out],
        "the post-renderer's input and output",
    )?;
    same_but_fixes(&given, &returned, &BTreeSet::new())?;
    ensure(
        plain_documents(&raw_in, &BTreeSet::new())? == plain_documents(&raw_out, &BTreeSet::new())?,
        || "the post-renderer changed the bytes of a document that is not a hook".to_owned(),
    )?;

    // Helm's output with a no-op post-renderer and with hookguard's.
    let [before, after] = read_both(env, [&noop, &fixed], "the renders")?;
    let (objects, hooks, fixed_hooks) = same_but_fixes(&before, &after, &random)?;
    ensure(
        plain_documents(&noop, &random)? == plain_documents(&fixed, &random)?,
        || "a document that is not a hook changed its bytes in Helm's output".to_owned(),
    )?;

    // The built-in policy: what it denies says so with the ways out; some charts it must pass.
    let default = render(env, chart, "hookguard-postrender", default_policy, None);
    let denied_by_default = !default.status.success();
    if denied_by_default {
        let err = String::from_utf8_lossy(&default.stderr);
        ensure(!NEVER_BROKEN.contains(&chart.name.as_str()), || {
            format!(
                "the built-in policy breaks {}, which it must never break: {err}",
                chart.name
            )
        })?;
        ensure(
            err.contains("without changing the chart") && err.contains("HookPolicyException"),
            || format!("a denial without its ways out: {err}"),
        )?;
    }

    // Server-side dry run of the hook objects: fixed ones pass wherever Helm's own do.
    env.cluster.namespace(&chart.namespace)?;
    // (Objects with random content are left out: their names differ between the renders.)
    let hook_docs = |text: &str| -> Result<String> {
        Ok(documents(text, true, &random)?
            .iter()
            .map(|d| format!("---\n{d}"))
            .collect())
    };
    let created_before = dry_run_creates(env, &chart.namespace, &hook_docs(&noop)?);
    let created_after = dry_run_creates(env, &chart.namespace, &hook_docs(&fixed)?);
    let lost: Vec<&String> = created_before.difference(&created_after).collect();
    ensure(lost.is_empty(), || {
        format!(
            "the API server creates these hook objects as Helm rendered them, but not as hookguard fixed them: {lost:?}"
        )
    })?;

    Ok(format!(
        "{:<28} {:>4} objects, {:>3} hooks, {:>3} fixed, dry run {:>3} -> {:>3}{}{}",
        chart.name,
        objects,
        hooks,
        fixed_hooks,
        created_before.len(),
        created_after.len(),
        if random.is_empty() {
            String::new()
        } else {
            format!(", {} random objects", random.len())
        },
        if denied_by_default {
            ", denied by the built-in policy (ways out named)"
        } else {
            ""
        }
    ))
}

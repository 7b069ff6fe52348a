//! The `hookguard` binary: lint, postrender, certs, version, config errors, and SIGTERM handling.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hookguard"));
    // Do not inherit configuration from the environment of whoever runs the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("HOOKGUARD_") {
            c.env_remove(k);
        }
    }
    c
}

/// `serve` on free loopback ports with its dev certificates in `dir`: (args, admin port).
fn serve_args(dir: &std::path::Path, extra: &[&str]) -> (Vec<String>, u16) {
    let (port, admin) = (common::free_port(), common::free_port());
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--admin-addr".into(),
        format!("127.0.0.1:{admin}"),
        "--cert-dir".into(),
        dir.join("certs").display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    (args, admin)
}

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_prints_the_crate_version() {
    let out = bin().arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hookguard {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn lint_of_a_clean_chart_exits_0_and_reports_mutations_and_warnings() {
    let out = bin()
        .args(["lint", &fixture_path("rendered-chart.yaml")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Job shop-db-migrate"), "{text}");
    assert!(text.contains("MUTATE [restart-policy]"), "{text}");
    assert!(text.contains("WARN   [image-tag]"), "{text}");
    assert!(text.contains("WARN   [delete-policy-recreate]"), "{text}");
    assert!(
        !text.contains("ServiceAccount"),
        "non-hooks are skipped: {text}"
    );
    assert!(text.trim_end().ends_with("3 hook objects checked: 0 would be denied, 2 warnings, 6 mutations the webhook would apply"), "{text}");
}

#[test]
fn lint_catches_the_typo_helm_would_silently_drop() {
    let out = bin()
        .args([
            "lint",
            "--output",
            "json",
            &fixture_path("rendered-typo.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v[0]["findings"].as_array().unwrap();
    let rules: Vec<&str> = findings
        .iter()
        .filter(|f| f["action"] == "deny")
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, vec!["hook-event-unknown", "delete-policy-unknown"]);
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"post-delete\"")
    );
}

#[test]
fn lint_reads_standard_input() {
    let input = std::fs::read_to_string(fixture_path("rendered-typo.yaml")).unwrap();
    let (code, stdout, _) = with_stdin(&["lint", "-"], &input);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("<stdin> (document 1): Job shop-cleanup"));
}

#[test]
fn lint_list_rules_shows_modes_from_the_config() {
    let dir = common::temp_dir("list-rules");
    let config = dir.join("p.yaml");
    std::fs::write(&config, "rules:\n  image-tag: enforce\n").unwrap();
    let out = bin()
        .args(["lint", "--list-rules", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("image-tag") && l.contains("enforce")),
        "{text}"
    );
    assert_eq!(text.lines().count(), hookguard::policy::RULES.len());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_config_is_rejected_at_startup_naming_the_field() {
    let dir = common::temp_dir("bad-config");
    let config = dir.join("p.yaml");
    std::fs::write(&config, "jobTtl:\n  defaultSeconds: 10\n").unwrap();
    let out = bin()
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jobTtl.defaultSeconds"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn certs_generate_writes_a_usable_pair_for_a_service() {
    let dir = common::temp_dir("certs");
    let out = bin()
        .args([
            "certs",
            "generate",
            "--out",
            dir.to_str().unwrap(),
            "--service",
            "hookguard",
            "--namespace",
            "hookguard",
            "--ip",
            "10.0.0.7",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bundle = stdout
        .lines()
        .find_map(|l| l.strip_prefix("caBundle:"))
        .unwrap()
        .trim()
        .to_owned();
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .unwrap();
    assert_eq!(ca, std::fs::read(dir.join("ca.crt")).unwrap());
    let pem = std::fs::read(dir.join("tls.crt")).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|d: rustls_pki_types::CertificateDer| d)
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>();
    assert!(
        sans.iter().any(|s| s.contains("hookguard.hookguard.svc")),
        "{sans:?}"
    );
    assert!(
        sans.iter().any(|s| s == "IPAddress(0a:00:00:07)"),
        "{sans:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_turns_readiness_off_then_exits_cleanly() {
    let dir = common::temp_dir("sigterm");
    let (args, admin) = serve_args(&dir, &["--shutdown-delay", "1500ms"]);
    let mut child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(common::wait_ready(&readyz));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // During the shutdown delay the process still answers, but reports not ready.
    let code = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        reqwest::get(&readyz).await.unwrap().status()
    });
    assert_eq!(code, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A command without any way to reach a cluster: no kubeconfig, not in a pod.
fn clusterless(home: &std::path::Path) -> Command {
    let mut c = bin();
    c.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", home);
    c
}

#[test]
fn audit_with_a_candidate_policy_that_does_not_validate_exits_2_naming_the_field() {
    let dir = common::temp_dir("audit-policy");
    let config = dir.join("candidate.yaml");
    std::fs::write(
        &config,
        "overrides: [{namespaces: [a], rules: {image-tags: warn}}]\n",
    )
    .unwrap();
    let out = clusterless(&dir)
        .args(["audit", "--policy", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("overrides[0].rules.image-tags"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_policy_selecting_namespaces_by_label_needs_namespace_labels() {
    let dir = common::temp_dir("namespace-labels");
    let config = dir.join("p.yaml");
    std::fs::write(
        &config,
        "overrides:\n  - namespaceSelector: {matchLabels: {tier: strict}}\n    rules: {image-tag: enforce}\n",
    )
    .unwrap();
    let (args, _) = serve_args(&dir, &["--config", config.to_str().unwrap()]);
    let out = clusterless(&dir).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("namespaceSelector") && stderr.contains("--namespace-labels"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn serve_is_the_webhook_only_and_its_metrics_are_the_webhooks() {
    let dir = common::temp_dir("webhook-only");
    // The inventory moved to `hookguard controller`: the old flag says where it went.
    let (args, _) = serve_args(&dir, &["--inventory"]);
    let out = clusterless(&dir).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("run in `hookguard controller`"), "{stderr}");

    let (args, admin) = serve_args(&dir, &[]);
    let mut child = clusterless(&dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(common::wait_ready(&format!(
        "http://127.0.0.1:{admin}/readyz"
    )));
    let metrics = rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        metrics.contains("# TYPE hookguard_admission_requests counter"),
        "{metrics}"
    );
    // The controller's families are the controller's: a webhook pod exporting
    // `hookguard_inventory_up 0` would look like a broken inventory.
    for family in [
        "hookguard_inventory_up",
        "hookguard_leader",
        "hookguard_hook_objects",
    ] {
        assert!(
            !metrics.contains(family),
            "{family} exported by serve:\n{metrics}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cluster_options_fail_fast_with_a_clear_message() {
    let dir = common::temp_dir("cluster-errors");
    let missing = dir.join("no-such-kubeconfig");
    let cases: [(&[&str], &str); 6] = [
        (
            &["controller", "--janitor"],
            "--janitor needs --janitor-namespaces",
        ),
        // Helm's sql driver keeps records outside the cluster: not a value hookguard accepts.
        (
            &["controller", "--helm-drivers", "secret,sql"],
            "[possible values: secret, configmap]",
        ),
        (
            &["audit", "--helm-drivers", "secrets"],
            "invalid value 'secrets' for '--helm-drivers",
        ),
        (
            &[
                "controller",
                "--admin-addr",
                "127.0.0.1:0",
                "--kubeconfig",
                missing.to_str().unwrap(),
            ],
            "no-such-kubeconfig",
        ),
        (
            &[
                "serve",
                "--cert-secret",
                "hookguard-tls",
                "--kubeconfig",
                missing.to_str().unwrap(),
            ],
            "no-such-kubeconfig",
        ),
        (
            &["audit", "--kubeconfig", missing.to_str().unwrap()],
            "no-such-kubeconfig",
        ),
    ];
    for (args, message) in cases {
        let out = clusterless(&dir)
            .args(args)
            .args(
                ["--cert-dir", dir.join("certs").to_str().unwrap()]
                    .iter()
                    .filter(|_| args[0] == "serve"),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `hookguard <args>` with `input` on stdin: (exit code, stdout, stderr).
fn with_stdin(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut child = bin()
        .args(args)
        .env_remove("HELM_NAMESPACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn postrender(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    with_stdin(&[&["postrender"], args].concat(), input)
}

fn helm4_postrender_input() -> String {
    std::fs::read_to_string(fixture_path("postrender/helm4-input.yaml")).unwrap()
}

#[test]
fn postrender_fixes_what_helm_4_sends_and_keeps_every_document() {
    let input = helm4_postrender_input().replace("pre-instal\n", "pre-install\n");
    let (code, stdout, stderr) = postrender(&["-n", "shop"], &input);
    assert_eq!(code, Some(0), "{stderr}");
    let docs = hookguard::yaml::decode_stream(&stdout).unwrap();
    assert_eq!(docs.len(), 3, "{stdout}");
    // The documents that are not hooks come back byte for byte.
    let unchanged = |text: &str| {
        hookguard::yaml::split_stream(text)
            .unwrap()
            .into_iter()
            .map(|c| c.text.to_owned())
            .filter(|t| !t.contains("helm.sh/hook"))
            .collect::<Vec<_>>()
    };
    assert_eq!(unchanged(&stdout), unchanged(&input));
    let setup = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "shop-setup")
        .unwrap();
    assert_eq!(setup["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(setup["spec"]["ttlSecondsAfterFinished"], 600);
    let annotations = &setup["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook-output-log-policy"], "hook-failed");
    assert_eq!(
        annotations["helm.sh/hook-delete-policy"],
        "before-hook-creation"
    );
    // Helm splits the output back into files by this annotation: it must survive.
    assert_eq!(
        annotations["postrenderer.helm.sh/postrender-filename"],
        "plugged/templates/setup-job.yaml"
    );
    let settings = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(settings["data"]["enabled"], "yes");
    assert!(settings["metadata"]["labels"].is_null());
}

#[test]
fn postrender_refuses_a_typod_hook_event_by_exit_status_or_for_helm() {
    let input = helm4_postrender_input();
    let (code, stdout, stderr) = postrender(&[], &input);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("Job shop-setup (plugged/templates/setup-job.yaml)")
            && stderr.contains("did you mean \"pre-install\""),
        "{stderr}"
    );
    // As Helm 4's plugin: exit 0 with the one document Helm refuses, the report in its name.
    let (code, stdout, _) = postrender(&["--helm-plugin"], &input);
    assert_eq!(code, Some(0));
    let docs = hookguard::yaml::decode_stream(&stdout).unwrap();
    assert_eq!(docs.len(), 1, "{stdout}");
    assert_eq!(docs[0]["kind"], "PostRenderDenied");
    assert!(docs[0]["metadata"]["name"].is_object());
    assert!(
        docs[0]["metadata"]["annotations"]["postrenderer.helm.sh/postrender-filename"]
            .as_str()
            .unwrap()
            .contains("did you mean \"pre-install\"")
    );
}

#[test]
fn postrender_lint_report_changes_nothing_and_reports() {
    let dir = common::temp_dir("postrender-lint");
    let report = dir.join("report.json");
    let input = helm4_postrender_input();
    let (code, stdout, stderr) = postrender(
        &[
            "--helm-plugin",
            &format!("--lint-report={}", report.display()),
        ],
        &input,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, input);
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["denied"], true);
    assert!(
        report["text"]
            .as_str()
            .unwrap()
            .contains("hook-event-unknown")
    );
}

#[test]
fn postrender_passes_a_document_it_cannot_read_through_and_says_so() {
    let input = "a: [\n---\nkind: ConfigMap\n";
    let (code, stdout, stderr) = postrender(&[], input);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, input);
    assert!(
        stderr.contains("document 1 (line 1)") && stderr.contains("passed through unchanged"),
        "{stderr}"
    );
    // A stream Kubernetes' own reader refuses is refused.
    let (code, stdout, stderr) = postrender(&[], "a: 1\n--- b: 2\n");
    assert_ne!(code, Some(0));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("invalid Yaml document separator"),
        "{stderr}"
    );
}

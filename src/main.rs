//! The `hookguard` command line: serve | controller | lint | postrender | helm-plugin | audit |
//! history | certs | version.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use hookguard::controller::ControllerOptions;
use hookguard::lint::{LintedObject, lint_text, render_text};
use hookguard::policy::{Config, Policy, RULES};
use hookguard::serve::{ServeOptions, serve};

#[derive(Parser)]
#[command(
    name = "hookguard",
    version,
    about = "Admission webhook and policy enforcer for Helm hook resources"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "HOOKGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `hookguard=debug`).
    #[arg(long, global = true, env = "HOOKGUARD_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum AuditFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the admission webhook (HTTPS) and its admin server (HTTP).
    Serve(Box<ServeOptions>),
    /// Run the hook inventory, orphan detection, the janitor and leader election, with an admin
    /// server (HTTP) and no other listener.
    Controller(Box<ControllerOptions>),
    /// Check rendered manifests (e.g. `helm template` output) with the same policy engine.
    Lint {
        /// YAML files (multi-document); `-` or nothing reads standard input.
        files: Vec<PathBuf>,
        /// Policy file (YAML); the built-in policy when absent.
        #[arg(long, env = "HOOKGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// Namespace assumed for objects that do not set one (for namespace exemptions).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// List the rules with their modes under the given policy, and exit.
        #[arg(long)]
        list_rules: bool,
    },
    /// Helm post-renderer: reads the manifests Helm rendered (standard input), writes them back
    /// (standard output) with the fixes the webhook would apply and
    /// `helm.sh/hook-output-log-policy: hook-failed` on hook Pods and Jobs that name none; fails
    /// when an enforced rule denies a hook. Helm 4 passes hooks to post-renderers, Helm 3 does not.
    Postrender {
        /// Policy file (YAML), the same as the webhook's; the built-in policy when absent.
        #[arg(long, env = "HOOKGUARD_CONFIG")]
        config: Option<PathBuf>,
        /// Namespace of objects that set none (Helm sets HELM_NAMESPACE for its plugins).
        #[arg(long, short = 'n', env = "HELM_NAMESPACE")]
        namespace: Option<String>,
        /// Run as Helm 4's `postrenderer/v1` plugin. Helm 4 discards a plugin's standard error,
        /// so a denial is handed back as a manifest that Helm refuses with the report in its own
        /// error message, instead of an exit status.
        #[arg(long)]
        helm_plugin: bool,
        /// Change nothing: write what the engine found (JSON: the `lint` report as `text`, and
        /// `denied`) to this file and hand the manifests back as they came (what
        /// `helm hookguard lint` uses).
        #[arg(long)]
        lint_report: Option<PathBuf>,
    },
    /// What `helm hookguard ...` runs (the `cli/v1` plugin): `lint CHART [helm template flags]`
    /// renders the chart with `$HELM_BIN template` and lints the result.
    #[command(name = "helm-plugin")]
    HelmPlugin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List hook objects in the cluster by namespace and release, with state, age and problems;
    /// with --policy, what a candidate policy would deny, warn about or change.
    Audit {
        /// kubeconfig (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
        #[arg(long, env = "HOOKGUARD_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Only this namespace (default: all namespaces).
        #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// All namespaces (the default without --namespace).
        #[arg(long, short = 'A')]
        all_namespaces: bool,
        /// Finished hooks at least this old are reported as `finished-long-ago`.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        #[arg(long, short = 'o', value_enum, default_value_t = AuditFormat::Table)]
        output: AuditFormat,
        /// Where Helm keeps release records (its HELM_DRIVER values), to tell orphaned hooks.
        #[arg(
            long,
            env = "HOOKGUARD_HELM_DRIVERS",
            value_enum,
            value_delimiter = ',',
            default_value = "secret,configmap"
        )]
        helm_drivers: Vec<hookguard::inventory::HelmDriver>,
        /// Judge a candidate policy file instead, with the webhook's engine: every live hook Job
        /// and Pod (as when created again) and every hook stored in the latest revision of each
        /// Helm release (what its next upgrade, rollback or test creates). Exits 1 when something
        /// would be denied.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// With --policy: hookguard's own namespace, as the webhook treats it: exempt, and where
        /// HookPolicyExceptions count unless the policy names `exceptions.namespaces`.
        #[arg(long, env = "HOOKGUARD_NAMESPACE")]
        hookguard_namespace: Option<String>,
    },
    /// The hook runs the controller recorded for a release (`--history`): revision, events,
    /// weight, kind, name, start, duration, outcome and, with --logs, the tail of each
    /// container's log, kept after Helm's delete policies removed the objects.
    History {
        release: String,
        /// The release's namespace (default: the kubeconfig's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Only the runs of this revision.
        #[arg(long)]
        revision: Option<u64>,
        /// Print the captured container logs too.
        #[arg(long)]
        logs: bool,
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// kubeconfig (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
        #[arg(long, env = "HOOKGUARD_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Where hookguard's controller keeps the history (its namespace).
        #[arg(long, env = "HOOKGUARD_NAMESPACE", default_value = "hookguard")]
        hookguard_namespace: String,
    },
    /// Certificate helpers.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Generate a CA and a serving certificate (tls.crt, tls.key, ca.crt, ca.key) into a directory.
    Generate {
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// DNS names of the serving certificate (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        dns: Vec<String>,
        /// IP addresses of the serving certificate (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        ip: Vec<IpAddr>,
        /// Also add the DNS names of this Service (`NAME.NAMESPACE.svc`, ...), with --namespace.
        #[arg(long, requires = "namespace")]
        service: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        /// Reuse ca.crt/ca.key already in --out (so a registered caBundle stays valid).
        #[arg(long)]
        reuse_ca: bool,
    },
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_format, &cli.log) {
        eprintln!("hookguard: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookguard: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(opts) => until_signal(None, |shutdown| async move {
            serve(*opts, shutdown).await.map_err(anyhow::Error::from)
        }),
        // The controller's work is a few watches: two workers, however many cores the node has.
        Command::Controller(opts) => until_signal(Some(2), |shutdown| async move {
            hookguard::controller::run(*opts, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }),
        Command::Lint {
            files,
            config,
            namespace,
            output,
            list_rules,
        } => lint(files, config, namespace, output, list_rules),
        Command::Postrender {
            config,
            namespace,
            helm_plugin,
            lint_report,
        } => postrender(config, namespace, helm_plugin, lint_report),
        Command::HelmPlugin { args } => helm_plugin(args),
        Command::Certs(CertsCommand::Generate {
            out,
            mut dns,
            ip,
            service,
            namespace,
            reuse_ca,
        }) => {
            if let (Some(service), Some(namespace)) = (service, namespace) {
                dns.extend(hookguard::certs::service_dns_names(&service, &namespace));
            }
            if dns.is_empty() && ip.is_empty() {
                anyhow::bail!("give at least one --dns name, --ip address or --service");
            }
            let written = hookguard::certs::write_certs(
                &out,
                &dns,
                &ip,
                reuse_ca,
                time::OffsetDateTime::now_utc(),
            )?;
            println!("CA certificate:      {}", written.ca_cert.display());
            println!("serving certificate: {}", written.tls_cert.display());
            println!("serving key:         {}", written.tls_key.display());
            println!("caBundle:            {}", written.ca_bundle);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            kubeconfig,
            namespace,
            all_namespaces: _,
            older_than,
            output,
            helm_drivers,
            policy,
            hookguard_namespace,
        } => {
            let runtime = one_shot_runtime()?;
            if let Some(path) = policy {
                let (policy, _) = match hookguard::serve::load_policy(&path) {
                    Ok((p, bytes)) => (
                        p.with_own_namespace(hookguard_namespace.as_deref().unwrap_or_default()),
                        bytes,
                    ),
                    Err(e) => {
                        eprintln!("hookguard: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
                let impacts = runtime.block_on(async {
                    let conn = hookguard::cluster::connect(kubeconfig.as_deref()).await?;
                    hookguard::impact::collect(
                        &conn.client,
                        namespace.as_deref(),
                        &helm_drivers,
                        &policy,
                    )
                    .await
                    .context("listing hook objects and Helm release records")
                })?;
                match output {
                    AuditFormat::Table => {
                        print!("{}", hookguard::impact::render_table(&impacts))
                    }
                    AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&impacts)?),
                }
                let denied = impacts.iter().any(hookguard::impact::Impact::denied);
                return Ok(if denied {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            let (inventory, known) = runtime.block_on(async {
                let conn = hookguard::cluster::connect(kubeconfig.as_deref()).await?;
                hookguard::inventory::snapshot(&conn.client, namespace.as_deref(), &helm_drivers)
                    .await
                    .context("listing hook objects")
            })?;
            if known.is_none() {
                eprintln!(
                    "hookguard: cannot list Helm's release records (labelled owner=helm) for --helm-drivers {helm_drivers:?}: orphaned hooks are not reported"
                );
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let rows = hookguard::audit::rows(
                &inventory,
                known.as_ref(),
                now,
                i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX),
            );
            match output {
                AuditFormat::Table => print!("{}", hookguard::audit::render_table(&rows)),
                AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History {
            release,
            namespace,
            revision,
            logs,
            output,
            kubeconfig,
            hookguard_namespace,
        } => {
            let runtime = one_shot_runtime()?;
            let (namespace, history) = runtime.block_on(async {
                let conn = hookguard::cluster::connect(kubeconfig.as_deref()).await?;
                let namespace = namespace.unwrap_or(conn.default_namespace);
                let history = hookguard::history::load(
                    &conn.client,
                    &hookguard_namespace,
                    &namespace,
                    &release,
                )
                .await
                .with_context(|| {
                    format!("reading the hook run history in namespace {hookguard_namespace}")
                })?;
                anyhow::Ok((namespace, history))
            })?;
            let Some(mut history) = history else {
                eprintln!(
                    "hookguard: no hook runs recorded for release {release} in namespace {namespace} \
                     (the controller records them with --history, in namespace {hookguard_namespace})"
                );
                return Ok(ExitCode::from(1));
            };
            match output {
                OutputFormat::Text => print!(
                    "{}",
                    hookguard::history::record::render_text(&history, revision, logs)
                ),
                OutputFormat::Json => {
                    if !logs {
                        history.runs.iter_mut().for_each(|r| r.logs.clear());
                    }
                    let runs: Vec<_> = history
                        .of_revision(revision)
                        .map(hookguard::history::record::RunView::new)
                        .collect();
                    let doc = serde_json::json!({
                        "namespace": history.namespace,
                        "release": history.release,
                        "runs": runs,
                    });
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("hookguard {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The runtime of a command that makes a few API calls and exits.
fn one_shot_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs a long-lived command on a multi-threaded runtime (`workers`: its size, default one per
/// core) with a shutdown token that the first SIGTERM or SIGINT cancels.
fn until_signal<F, Fut>(workers: Option<usize>, command: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        hookguard::admin::cancel_on_signal(shutdown.clone())
            .context("installing the signal handlers")?;
        command(shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The policy of `--config`, or the built-in one.
fn policy_from(config: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    Ok(match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading policy config {}", path.display()))?;
            Config::from_yaml(&text).with_context(|| format!("policy config {}", path.display()))?
        }
        None => Policy::default(),
    })
}

fn postrender(
    config: Option<PathBuf>,
    namespace: Option<String>,
    helm_plugin: bool,
    lint_report: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use hookguard::postrender::{denial_report, helm_refusal, post_render};
    let policy = policy_from(config.as_deref())?;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the rendered manifests from standard input")?;
    let rendered = post_render(
        &policy,
        &text,
        namespace.as_deref().filter(|n| !n.is_empty()),
    )?;
    for unreadable in &rendered.unreadable {
        eprintln!(
            "hookguard: {unreadable}; passed through unchanged and unchecked (Kubernetes' YAML \
             decoder, which Helm uses next, decides)"
        );
    }
    if let Some(path) = lint_report {
        let denied: Vec<&str> = rendered.denied().map(|o| o.source.as_str()).collect();
        let report = serde_json::json!({
            "text": render_text(&rendered.objects),
            "denied": !denied.is_empty(),
            "deniedTemplates": denied,
        });
        std::fs::write(&path, serde_json::to_vec(&report)?)
            .with_context(|| format!("writing the lint report {}", path.display()))?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let denied: Vec<&LintedObject> = rendered.denied().collect();
    if denied.is_empty() {
        print!("{}", rendered.manifests);
        return Ok(ExitCode::SUCCESS);
    }
    let report = denial_report(&denied);
    eprintln!("{report}");
    if helm_plugin {
        print!("{}", helm_refusal(&report));
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::from(1))
}

/// `helm hookguard lint CHART [flags]`: Helm drops a hook with an unknown event from everything
/// it prints (`helm template` included), so the chart is rendered through the post-renderer
/// plugin, which sees the documents before Helm sorts them, in its report-only mode.
fn helm_plugin(args: Vec<String>) -> anyhow::Result<ExitCode> {
    const USAGE: &str = "usage: helm hookguard lint CHART [helm template flags]\n\
        Renders the chart with `helm template` through the hookguard-postrender plugin (hooks \
        included, even those with an event Helm does not know) and checks it with hookguard's \
        engine; the policy file is $HOOKGUARD_CONFIG (the built-in policy when unset).";
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match command.as_str() {
        "lint" if !rest.is_empty() => {}
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    let helm = std::env::var_os("HELM_BIN").unwrap_or_else(|| "helm".into());
    let report = std::env::temp_dir().join(format!("hookguard-lint-{}.json", std::process::id()));
    let rendered = std::process::Command::new(&helm)
        .arg("template")
        .args(rest)
        .arg("--post-renderer=hookguard-postrender")
        .arg(format!(
            "--post-renderer-args=--lint-report={}",
            report.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("running {} template", helm.to_string_lossy()))?;
    let found = std::fs::read(&report);
    let _ = std::fs::remove_file(&report);
    if !rendered.status.success() {
        let stderr = String::from_utf8_lossy(&rendered.stderr);
        eprint!("{stderr}");
        if stderr.contains("hookguard-postrender") && stderr.contains("not found") {
            eprintln!(
                "hookguard: `helm hookguard lint` renders through the post-renderer plugin: \
                 helm plugin install <hookguard>/plugins/hookguard-postrender"
            );
        }
        eprintln!("hookguard: helm template failed ({})", rendered.status);
        return Ok(ExitCode::from(2));
    }
    let found = found.context("the post-renderer wrote no report")?;
    let found: serde_json::Value =
        serde_json::from_slice(&found).context("reading the post-renderer's report")?;
    print!("{}", found["text"].as_str().unwrap_or_default());
    // Where a denied hook's template is guarded by a value, that value skips the hook.
    let chart = rest.first().map(PathBuf::from).filter(|p| p.is_dir());
    let templates = found["deniedTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for template in templates.iter().filter_map(|t| t.as_str()) {
        if let Some(switch) = chart.as_deref().and_then(|c| hook_switch_in(c, template)) {
            println!("{template}: to skip this hook without changing the chart: --set {switch}");
        }
    }
    Ok(if found["denied"].as_bool() != Some(false) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The value that skips the hook rendered by `template` (`chart/templates/x.yaml`, or
/// `chart/charts/sub/templates/x.yaml` for a subchart) of the chart in directory `chart`.
fn hook_switch_in(chart: &std::path::Path, template: &str) -> Option<String> {
    let mut parts = template.split('/');
    parts.next()?;
    let relative: Vec<&str> = parts.collect();
    let mut prefix = Vec::new();
    let mut i = 0;
    while i + 1 < relative.len() && relative[i] == "charts" {
        prefix.push(relative[i + 1]);
        i += 2;
    }
    let text = std::fs::read_to_string(chart.join(relative.join("/"))).ok()?;
    hookguard::lint::hook_switch(&text, &prefix.join("."))
}

fn lint(
    files: Vec<PathBuf>,
    config: Option<PathBuf>,
    namespace: Option<String>,
    output: OutputFormat,
    list_rules: bool,
) -> anyhow::Result<ExitCode> {
    let policy = policy_from(config.as_deref())?;
    if list_rules {
        for rule in RULES {
            let info = rule.info();
            let mode = policy.mode(info.id).unwrap_or(info.default_mode);
            println!("{:<24} {:<8} {}", info.id, mode.to_string(), info.summary);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sources: Vec<PathBuf> = if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files
    };
    let mut all: Vec<LintedObject> = Vec::new();
    for source in sources {
        let (name, text) = if source.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(&source)
                .with_context(|| format!("reading {}", source.display()))?;
            (source.display().to_string(), text)
        };
        all.extend(lint_text(&policy, &name, &text, namespace.as_deref())?);
    }
    match output {
        OutputFormat::Text => print!("{}", render_text(&all)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&all)?),
    }
    Ok(if all.iter().any(LintedObject::denied) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

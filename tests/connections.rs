//! Connection hygiene of the real `hookguard serve` binary over real TLS: silent connections are
//! closed, idle and old connections end gracefully, the connection cap and the body budget shed
//! load instead of growing, and SIGTERM loses no request sent on an established connection.
//!
//! Raw hyper clients are used where a test must tell "written on an established connection but
//! never answered" (a failure) from "a new connection refused after the listener closed" (fine).

mod common;

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// `hookguard serve` as a child process on free loopback ports, with dev certificates.
struct Serve {
    child: Child,
    target: Target,
    admin: u16,
    dir: PathBuf,
}

/// Where the webhook listens and the CA it is signed by: cheap to clone into client tasks.
#[derive(Clone)]
struct Target {
    port: u16,
    ca: Arc<Vec<u8>>,
}

impl std::ops::Deref for Serve {
    type Target = Target;
    fn deref(&self) -> &Target {
        &self.target
    }
}

impl Serve {
    async fn start(name: &str, extra: &[&str]) -> Serve {
        Serve::start_with(name, extra, |_| {}).await
    }

    async fn start_with(name: &str, extra: &[&str], configure: impl FnOnce(&mut Command)) -> Serve {
        let dir = common::temp_dir(name);
        let (port, admin) = (common::free_port(), common::free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookguard"));
        for (k, _) in std::env::vars() {
            if k.starts_with("HOOKGUARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--cert-dir", &dir.join("certs").display().to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).expect("log file"));
        configure(&mut cmd);
        let child = cmd.spawn().expect("hookguard serve starts");
        common::wait_ready(&format!("http://127.0.0.1:{admin}/readyz")).await;
        let ca = std::fs::read(dir.join("certs/ca.crt")).expect("dev CA written");
        Serve {
            child,
            target: Target {
                port,
                ca: Arc::new(ca),
            },
            admin,
            dir,
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
    }

    async fn livez(&self) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        client
            .get(format!("http://127.0.0.1:{}/livez", self.admin))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "did not exit within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads a field of /proc/PID/status in KiB (VmSize, VmHWM, VmRSS).
    fn proc_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn https(&self) -> reqwest::Client {
        common::https_client(&self.ca)
    }

    /// A TLS connection offering exactly `alpn`.
    async fn tls(&self, alpn: &[&[u8]]) -> io::Result<TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&self.ca) {
            roots
                .add(cert.map_err(io::Error::other)?)
                .map_err(io::Error::other)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    async fn h1(&self) -> io::Result<H1> {
        let tls = self.tls(&[b"http/1.1"]).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(io::Error::other)?;
        let conn = tokio::spawn(conn);
        Ok(H1 { sender, conn })
    }

    async fn h2(&self) -> io::Result<H2> {
        let tls = self.tls(&[b"h2"]).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(io::Error::other)?;
        let conn = tokio::spawn(conn);
        Ok(H2 { sender, conn })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: tokio::task::JoinHandle<hyper::Result<()>>,
}

struct H2 {
    sender: http2::SendRequest<Full<Bytes>>,
    conn: tokio::task::JoinHandle<hyper::Result<()>>,
}

fn review() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&common::fixture("job-notify-curl-latest-create.json")).expect("json"),
    )
}

fn h1_request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("/mutate")
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .expect("request")
}

fn h2_request(port: u16, body: &Bytes) -> Request<Full<Bytes>> {
    Request::post(format!("https://localhost:{port}/mutate"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .expect("request")
}

/// The status, whether the response said `Connection: close`, once the whole body is read.
async fn complete(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<(StatusCode, bool), hyper::Error> {
    let status = response.status();
    let close = response
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    response.into_body().collect().await?;
    Ok((status, close))
}

/// Waits until the server closes `stream`; returns how long after `since` that was.
async fn closed_after(mut stream: impl tokio::io::AsyncRead + Unpin, since: Instant) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

async fn post_ok(client: &reqwest::Client, url: &str, body: &Bytes) -> Result<(), String> {
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    match response.status().as_u16() {
        200 => Ok(()),
        status => Err(format!("status {status}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_within_the_first_request_timeout_plus_a_second() {
    let srv = Serve::start("silent", &["--first-request-timeout", "1s"]).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let kind = [
            "tcp without TLS",
            "TLS http/1.1",
            "TLS h2 without preface",
            "TLS http/1.1 trickling its headers",
        ][i % 4];
        let target = srv.target.clone();
        tasks.push((
            kind,
            tokio::spawn(async move {
                let started = Instant::now();
                match i % 4 {
                    0 => {
                        let tcp = TcpStream::connect(("127.0.0.1", target.port)).await?;
                        Ok::<_, io::Error>(closed_after(tcp, started).await)
                    }
                    1 => Ok(closed_after(target.tls(&[b"http/1.1"]).await?, started).await),
                    2 => Ok(closed_after(target.tls(&[b"h2"]).await?, started).await),
                    _ => {
                        let stream = target.tls(&[b"http/1.1"]).await?;
                        Ok(slowloris(stream, started).await)
                    }
                }
            }),
        ));
    }
    let mut longest = Duration::ZERO;
    for (kind, task) in tasks {
        let lived = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("{kind}: still open after 10 s"))
            .expect("task")
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(
            lived >= Duration::from_millis(900),
            "{kind}: closed early, after {lived:?}"
        );
        assert!(lived <= Duration::from_secs(2), "{kind}: lived {lived:?}");
        longest = longest.max(lived);
    }
    eprintln!("60 silent connections: the longest lived {longest:?} (first-request timeout 1 s)");
    // The server is none the worse for it.
    post_ok(&srv.https(), &srv.url("/mutate"), &review())
        .await
        .expect("served");
}

/// Sends a request line and then one header byte every 100 ms (never finishing the headers);
/// returns when the server closes the connection.
async fn slowloris(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    since: Instant,
) -> Duration {
    use tokio::io::AsyncWriteExt as _;
    let (reader, mut writer) = tokio::io::split(stream);
    let trickle = tokio::spawn(async move {
        if writer
            .write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .is_err()
        {
            return;
        }
        loop {
            if writer.write_all(b"x").await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let lived = closed_after(reader, since).await;
    trickle.abort();
    lived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_server_sheds_silent_and_slow_clients_and_keeps_answering() {
    let srv = Serve::start(
        "admin",
        &[
            "--header-read-timeout",
            "1s",
            "--admin-max-connections",
            "8",
        ],
    )
    .await;
    let admin = srv.admin;
    // Fill the admin server with slow and silent clients, and more.
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let tcp = TcpStream::connect(("127.0.0.1", admin)).await?;
            Ok::<_, io::Error>(if i % 2 == 0 {
                closed_after(tcp, started).await
            } else {
                slowloris(tcp, started).await
            })
        }));
    }
    for task in tasks {
        let lived = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("still open after 10 s")
            .expect("task")
            .expect("connect");
        // Beyond the cap: closed at once; within it: after the header timeout (1 s).
        assert!(lived <= Duration::from_secs(2), "lived {lived:?}");
    }
    assert!(
        srv.metric(r#"hookguard_connections_refused_total{server="admin"}"#)
            .await
            >= 1.0
    );
    assert!(srv.livez().await, "/livez answers once they are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let srv = Serve::start("idle", &["--idle-timeout", "1500ms"]).await;
    let body = review();

    let mut h1 = srv.h1().await.expect("h1 connection");
    let response = h1
        .sender
        .send_request(h1_request(&body))
        .await
        .expect("h1 response");
    assert_eq!(
        complete(response).await.expect("body"),
        (StatusCode::OK, false)
    );
    let idle_since = Instant::now();
    let mut h2 = srv.h2().await.expect("h2 connection");
    let response = h2
        .sender
        .send_request(h2_request(srv.port, &body))
        .await
        .expect("h2 response");
    assert_eq!(complete(response).await.expect("body").0, StatusCode::OK);
    let h2_idle_since = Instant::now();

    let ended = tokio::time::timeout(Duration::from_secs(10), &mut h1.conn)
        .await
        .expect("h1 connection still open after 10 s");
    let h1_lived = idle_since.elapsed();
    assert!(ended.expect("task").is_ok(), "h1 closed cleanly");
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut h2.conn)
        .await
        .expect("h2 connection still open after 10 s");
    let h2_lived = h2_idle_since.elapsed();
    // GOAWAY then close: the client sees a clean end, not an error.
    assert!(ended.expect("task").is_ok(), "h2 ended cleanly");
    eprintln!("idle timeout 1.5 s: HTTP/1.1 closed after {h1_lived:?}, HTTP/2 after {h2_lived:?}");
    for lived in [h1_lived, h2_lived] {
        assert!(
            lived >= Duration::from_millis(1400),
            "closed early: {lived:?}"
        );
        assert!(
            lived <= Duration::from_millis(2500),
            "closed late: {lived:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_older_than_max_age_end_gracefully_and_clients_continue_on_new_ones() {
    let srv = Serve::start(
        "max-age",
        &["--max-connection-age", "2s", "--idle-timeout", "60s"],
    )
    .await;
    let body = review();

    // HTTP/1.1: a response after the age (2 s ± 10%) says `Connection: close`, then it closes.
    let started = Instant::now();
    let mut h1 = srv.h1().await.expect("h1");
    let closed_at = loop {
        h1.sender
            .ready()
            .await
            .expect("connection open until told otherwise");
        let response = h1
            .sender
            .send_request(h1_request(&body))
            .await
            .expect("answered");
        let (status, close) = complete(response).await.expect("body");
        assert_eq!(status, StatusCode::OK);
        if close {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never told to close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut h1.conn).await;
    assert!(
        ended.is_ok(),
        "h1 connection not closed after Connection: close"
    );

    // HTTP/2: GOAWAY around the age; every request on it was answered.
    let started = Instant::now();
    let mut h2 = srv.h2().await.expect("h2");
    let mut answered = 0;
    let goaway_at = loop {
        if h2.conn.is_finished() || h2.sender.ready().await.is_err() {
            break started.elapsed();
        }
        match h2.sender.send_request(h2_request(srv.port, &body)).await {
            Ok(response) => {
                assert_eq!(complete(response).await.expect("body").0, StatusCode::OK);
                answered += 1;
            }
            Err(e) => {
                assert!(not_processed(&e), "h2 request lost: {e:?}");
                break started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no GOAWAY");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut h2.conn).await;
    assert!(
        ended.is_ok_and(|r| r.is_ok_and(|r| r.is_ok())),
        "h2 connection not ended cleanly"
    );
    eprintln!(
        "max age 2 s: HTTP/1.1 told to close after {closed_at:?}, HTTP/2 GOAWAY after {goaway_at:?} ({answered} requests answered on it)"
    );
    for at in [closed_at, goaway_at] {
        assert!(at >= Duration::from_millis(1700), "ended early: {at:?}");
        assert!(at <= Duration::from_millis(3500), "ended late: {at:?}");
    }

    // Pooling clients (HTTP/2 and HTTP/1.1) do not notice: 5 s of requests, all answered.
    let h2_client = srv.https();
    let h1_client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&srv.ca).expect("CA"))
        .http1_only()
        .build()
        .expect("client");
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(5) {
        for client in [&h2_client, &h1_client] {
            post_ok(client, &srv.url("/mutate"), &body)
                .await
                .unwrap_or_else(|e| panic!("request {sent} failed across a rotation: {e}"));
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{sent} requests over 5 s through pooling clients, all answered");
}

/// The request was refused before it was processed (GOAWAY, REFUSED_STREAM, or never sent):
/// safe to retry, unlike a request that was accepted and then lost.
fn not_processed(e: &hyper::Error) -> bool {
    if e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = err.source();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_new_connections_and_recovers() {
    let srv = Serve::start("cap", &["--max-connections", "4"]).await;
    let body = review();
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut h1 = srv.h1().await.expect("within the cap");
        let response = h1
            .sender
            .send_request(h1_request(&body))
            .await
            .expect("answered");
        assert_eq!(complete(response).await.expect("body").0, StatusCode::OK);
        open.push(h1);
    }
    // The fifth is accepted by the kernel and closed by hookguard before the handshake.
    for _ in 0..3 {
        assert!(
            srv.tls(&[b"http/1.1"]).await.is_err(),
            "fifth connection served"
        );
    }
    assert!(
        srv.metric(r#"hookguard_connections_refused_total{server="webhook"}"#)
            .await
            >= 3.0
    );
    // Those within the cap are unaffected.
    for h1 in &mut open {
        let response = h1
            .sender
            .send_request(h1_request(&body))
            .await
            .expect("answered");
        assert_eq!(complete(response).await.expect("body").0, StatusCode::OK);
    }
    // One closes: a new connection gets its slot.
    drop(open.pop());
    let started = Instant::now();
    loop {
        if let Ok(mut h1) = srv.h1().await
            && let Ok(response) = h1.sender.send_request(h1_request(&body)).await
        {
            assert_eq!(complete(response).await.expect("body").0, StatusCode::OK);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A valid AdmissionReview padded to `size` bytes with a field the server ignores.
fn padded_review(size: usize) -> Bytes {
    let mut v = common::fixture("job-notify-curl-latest-create.json");
    let base = serde_json::to_vec(&v).expect("json").len();
    let pad = size.saturating_sub(base + 16);
    v["padding"] = serde_json::Value::String("x".repeat(pad));
    let bytes = serde_json::to_vec(&v).expect("json");
    assert!(bytes.len() <= size);
    Bytes::from(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_maximal_bodies_is_shed_with_503_under_a_memory_cap() {
    const MAX_BODY: usize = 4 * 1024 * 1024;
    const CLIENTS: usize = 48;
    let mut srv = Serve::start_with(
        "flood",
        &[
            "--max-body-bytes",
            &MAX_BODY.to_string(),
            "--max-body-bytes-in-flight",
            &(2 * MAX_BODY).to_string(),
        ],
        // One malloc arena: per-thread arenas reserve 64 MiB of address space each up front, which
        // would hide the growth the cap below is meant to catch.
        |cmd| {
            cmd.env("MALLOC_ARENA_MAX", "1");
        },
    )
    .await;
    let body = padded_review(MAX_BODY);
    post_ok(&srv.https(), &srv.url("/validate"), &body)
        .await
        .expect("one maximal body alone is served");

    // Address-space cap: what the process has now plus 48 MiB. The flood holds 192 MiB of bodies
    // if nothing is shed (measured without the budget: +74 MiB of address space, and the process
    // dies under this cap); with the budget it needs about +16 MiB.
    let headroom_kib = 48 * 1024;
    let cap = (srv.proc_kib("VmSize") + headroom_kib) * 1024;
    let limit = libc::rlimit {
        rlim_cur: cap,
        rlim_max: cap,
    };
    // SAFETY: prlimit(2) on our own child, with a valid rlimit.
    let rc = unsafe { libc::prlimit(srv.pid(), libc::RLIMIT_AS, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());
    let rss_before = srv.proc_kib("VmRSS");

    let livez_ok = Arc::new(AtomicUsize::new(0));
    let livez_failed = Arc::new(AtomicUsize::new(0));
    let flooding = Arc::new(AtomicBool::new(true));
    let probe = {
        let (ok, failed, flooding) = (livez_ok.clone(), livez_failed.clone(), flooding.clone());
        let admin = srv.admin;
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            while flooding.load(Ordering::Relaxed) {
                let answered = client
                    .get(format!("http://127.0.0.1:{admin}/livez"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if answered { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Each client on its own connection, all at once.
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, body) = (srv.https(), srv.url("/validate"), body.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await;
            let status = match result {
                Ok(r) => {
                    let retry_after = r.headers().contains_key("retry-after");
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if status == 503 {
                        assert!(retry_after, "503 without Retry-After");
                        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON 503");
                        assert_eq!(v["status"], 503);
                    }
                    Ok(status)
                }
                Err(e) => Err(format!("{e:?}")),
            };
            (status, started.elapsed())
        }));
    }
    let (mut served, mut shed, mut slowest_shed) = (0, 0, Duration::ZERO);
    for task in tasks {
        let (status, took) = task.await.expect("task");
        match status {
            Ok(200) => served += 1,
            Ok(503) => {
                shed += 1;
                slowest_shed = slowest_shed.max(took);
            }
            other => panic!("unexpected outcome {other:?}:\n{}", srv.log()),
        }
    }
    flooding.store(false, Ordering::Relaxed);
    probe.await.expect("probe");
    let peak_kib = srv.proc_kib("VmHWM");
    let vm_peak_kib = srv.proc_kib("VmPeak");
    eprintln!(
        "{CLIENTS} x {} MiB bodies with an 8 MiB budget: {served} served, {shed} shed (slowest 503 after {slowest_shed:?}); RSS {} MiB before, peak {} MiB; address space capped at {} MiB, peak {} MiB; /livez {} ok, {} failed",
        MAX_BODY >> 20,
        rss_before >> 10,
        peak_kib >> 10,
        cap >> 20,
        vm_peak_kib >> 10,
        livez_ok.load(Ordering::Relaxed),
        livez_failed.load(Ordering::Relaxed),
    );
    assert!(shed > 0, "nothing was shed");
    assert!(served > 0, "nothing was served");
    // "At once": well before the 10 s request timeout, even on a loaded machine.
    assert!(
        slowest_shed < Duration::from_secs(5),
        "503 took {slowest_shed:?}"
    );
    assert!(livez_ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        livez_failed.load(Ordering::Relaxed),
        0,
        "/livez failed during the flood"
    );
    assert_eq!(
        srv.metric(r#"hookguard_requests_shed_total{reason="body_budget"}"#)
            .await,
        shed as f64
    );
    // Alive, and serving normally afterwards.
    assert!(srv.alive(), "the process died:\n{}", srv.log());
    assert!(srv.livez().await);
    post_ok(&srv.https(), &srv.url("/validate"), &review())
        .await
        .expect("served after the flood");
    post_ok(&srv.https(), &srv.url("/validate"), &body)
        .await
        .expect("a maximal body is served after the flood");
}

/// What one client saw through the SIGTERM.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    answered_after_sigterm: usize,
    told_to_close: usize,
    /// Not sent, or refused unprocessed (GOAWAY): safe to retry.
    not_processed: usize,
    /// New connections refused once the listener closed.
    refused: usize,
    /// Written on an established connection and never answered.
    lost: Vec<String>,
}

async fn h1_load(target: Target, sigterm: Arc<AtomicBool>) -> Tally {
    let body = review();
    let mut tally = Tally::default();
    'connections: loop {
        let Ok(mut h1) = target.h1().await else {
            tally.refused += 1;
            if sigterm.load(Ordering::Relaxed) {
                return tally;
            }
            continue;
        };
        loop {
            if h1.sender.ready().await.is_err() {
                continue 'connections;
            }
            let after_sigterm = sigterm.load(Ordering::Relaxed);
            match h1.sender.send_request(h1_request(&body)).await {
                Ok(response) => match complete(response).await {
                    Ok((StatusCode::OK, close)) => {
                        tally.answered += 1;
                        tally.answered_after_sigterm += usize::from(after_sigterm);
                        if close {
                            tally.told_to_close += 1;
                            continue 'connections;
                        }
                    }
                    Ok((status, _)) => tally.lost.push(format!("status {status}")),
                    Err(e) => tally.lost.push(format!("body: {e:?}")),
                },
                Err(e) if e.is_canceled() => {
                    tally.not_processed += 1;
                    continue 'connections;
                }
                Err(e) => {
                    tally.lost.push(format!("{e:?}"));
                    continue 'connections;
                }
            }
        }
    }
}

async fn h2_load(target: Target, sigterm: Arc<AtomicBool>) -> Tally {
    let body = review();
    let mut tally = Tally::default();
    loop {
        let Ok(h2) = target.h2().await else {
            tally.refused += 1;
            if sigterm.load(Ordering::Relaxed) {
                return tally;
            }
            continue;
        };
        // Four streams at a time on the one connection.
        let streams = (0..4).map(|_| {
            let (mut sender, body, sigterm) = (h2.sender.clone(), body.clone(), sigterm.clone());
            let port = target.port;
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    if sender.ready().await.is_err() {
                        return tally;
                    }
                    let after_sigterm = sigterm.load(Ordering::Relaxed);
                    match sender.send_request(h2_request(port, &body)).await {
                        Ok(response) => match complete(response).await {
                            Ok((StatusCode::OK, _)) => {
                                tally.answered += 1;
                                tally.answered_after_sigterm += usize::from(after_sigterm);
                            }
                            Ok((status, _)) => tally.lost.push(format!("status {status}")),
                            Err(e) => tally.lost.push(format!("body: {e:?}")),
                        },
                        Err(e) if not_processed(&e) => {
                            tally.not_processed += 1;
                            return tally;
                        }
                        Err(e) => {
                            tally.lost.push(format!("{e:?}"));
                            return tally;
                        }
                    }
                }
            })
        });
        let streams: Vec<_> = streams.collect();
        for stream in streams {
            let t = stream.await.expect("stream task");
            tally.answered += t.answered;
            tally.answered_after_sigterm += t.answered_after_sigterm;
            tally.not_processed += t.not_processed;
            tally.lost.extend(t.lost);
        }
        match h2.conn.await.expect("connection task") {
            // GOAWAY and a clean close.
            Ok(()) => tally.told_to_close += 1,
            Err(e) => tally.lost.push(format!("connection: {e:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_sent_on_an_established_connection() {
    let mut srv = Serve::start(
        "sigterm",
        &["--shutdown-delay", "500ms", "--shutdown-grace", "10s"],
    )
    .await;
    let sigterm = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push((
            "HTTP/1.1",
            tokio::spawn(h1_load(srv.target.clone(), sigterm.clone())),
        ));
    }
    clients.push((
        "HTTP/2",
        tokio::spawn(h2_load(srv.target.clone(), sigterm.clone())),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    sigterm.store(true, Ordering::Relaxed);
    srv.sigterm();
    let status = tokio::task::block_in_place(|| srv.wait_exit(Duration::from_secs(20)));
    assert!(status.success(), "exit status {status}:\n{}", srv.log());
    let mut lost = Vec::new();
    for (protocol, client) in clients {
        let tally = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .unwrap_or_else(|_| panic!("{protocol} client still running after the exit"))
            .expect("client task");
        eprintln!("{protocol}: {tally:?}");
        assert!(
            tally.answered_after_sigterm > 0,
            "{protocol}: no load during the drain"
        );
        assert!(
            tally.told_to_close > 0,
            "{protocol}: never told to close: {tally:?}"
        );
        lost.extend(tally.lost.into_iter().map(|l| format!("{protocol}: {l}")));
    }
    assert!(
        lost.is_empty(),
        "requests sent on established connections were lost: {lost:#?}"
    );
}

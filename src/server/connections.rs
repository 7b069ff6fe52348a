//! The listeners of `hookguard serve`: an accept loop over tokio, tokio-rustls and hyper that owns
//! each connection's lifecycle.
//!
//! A fail-closed webhook that holds every connection it is offered becomes the outage it guards
//! against, so every connection here is bounded in time and number:
//! - the first request's headers must arrive within `--first-request-timeout` of the accept (TLS
//!   handshake and, without ALPN, protocol detection included); silent connections are closed;
//! - a connection with nothing in flight for `--idle-timeout` is closed (HTTP/2: GOAWAY first);
//! - after `--max-connection-age` (±10% jitter, so replicas do not all cycle at once) a connection
//!   is ended gracefully: HTTP/2 gets GOAWAY, HTTP/1.1 answers its next response with
//!   `Connection: close`; this also spreads kube-apiserver's long-lived connections over replicas;
//! - beyond `--max-connections` new connections are closed at once and counted;
//! - on drain (SIGTERM, after the shutdown delay) the listener closes, HTTP/2 connections get
//!   GOAWAY and HTTP/1.1 responses carry `Connection: close`. An idle HTTP/1.1 connection is not
//!   closed at once: a client may be writing its next request right now, and closing would lose
//!   it, so it gets [`DRAIN_LINGER`] to send one more request (answered, with `Connection: close`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::tls::SharedServerConfig;

/// How long an idle HTTP/1.1 connection is kept open once draining has begun, for a request the
/// client may already have sent; it is answered with `Connection: close`.
pub const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// Jitter applied to `--max-connection-age`, as a fraction either way.
const AGE_JITTER: f64 = 0.1;

/// HTTP/1.1 read buffer: admission request headers are small; this bounds what a connection can
/// make the server buffer (hyper's default is ~400 KiB).
const H1_MAX_BUF: usize = 64 * 1024;

/// HTTP/2 header list limit (hyper's default, made explicit so a change upstream cannot loosen it).
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// Streams a client may open and reset before they are processed (rapid reset, CVE-2023-44487);
/// hyper's default, explicit for the same reason.
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams the server may reset because of client errors before the connection is closed
/// (CVE-2025-8671, "MadeYouReset"); hyper's default, explicit.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Connection settings of `hookguard serve`. Every flag can also be set with a `HOOKGUARD_*` variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionOptions {
    /// Time from accepting a connection to its first complete request headers (TLS handshake and
    /// protocol detection included); connections that stay silent are closed.
    #[arg(long, env = "HOOKGUARD_FIRST_REQUEST_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first).
    #[arg(long, env = "HOOKGUARD_IDLE_TIMEOUT", default_value = "90s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// Connections are ended gracefully after about this long (±10% jitter): GOAWAY for HTTP/2,
    /// `Connection: close` on the next HTTP/1.1 response. Rebalances clients over replicas.
    #[arg(long, env = "HOOKGUARD_MAX_CONNECTION_AGE", default_value = "10m", value_parser = positive_duration)]
    pub max_connection_age: Duration,
    /// Most open webhook connections; beyond it new connections are closed at once (counted in
    /// hookguard_connections_refused_total).
    #[arg(long, env = "HOOKGUARD_MAX_CONNECTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most concurrent HTTP/2 streams (requests) per webhook connection.
    #[arg(long, env = "HOOKGUARD_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,
    /// Request body bytes all in-flight webhook requests may hold together (each reserves its
    /// Content-Length, or --max-body-bytes when unknown); beyond it requests get 503 at once.
    /// Reading a body briefly takes about twice its size, so 32 MiB keeps the process near
    /// 100 MiB under a flood, inside the chart's 128 Mi limit.
    #[arg(long, env = "HOOKGUARD_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 32 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes_in_flight: u64,
    /// Most open admin-server connections (/livez, /readyz, /metrics).
    #[arg(long, env = "HOOKGUARD_ADMIN_MAX_CONNECTIONS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than 0".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Time limits of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Accept to first complete request headers.
    pub first_request: Duration,
    /// TLS handshake (within `first_request`).
    pub handshake: Duration,
    /// Nothing in flight for this long: the connection is closed.
    pub idle: Duration,
    /// Graceful end after about this long; `None`: no limit.
    pub max_age: Option<Duration>,
    /// After a graceful end (or drain) began: longest wait before the connection is dropped.
    pub close_grace: Duration,
}

/// One listener: what it serves, how, and within which bounds.
pub struct Listener {
    pub listener: TcpListener,
    /// `None`: plain HTTP/1.1 (the admin server). Read once per accepted connection.
    pub tls: Option<SharedServerConfig>,
    pub app: Router,
    pub timeouts: Timeouts,
    pub max_connections: u32,
    pub http: auto::Builder<TokioExecutor>,
    /// Connections closed at once because `max_connections` were open.
    pub refused: Counter,
}

/// The hyper settings of the webhook listener.
pub fn webhook_http(opts: &ConnectionOptions) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        // hyper's header timer also runs while a keep-alive connection waits for its next request,
        // so it would override --idle-timeout; the first request is bounded by our own timer.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(H1_MAX_BUF);
    http.http2()
        .timer(TokioTimer::new())
        // Pings find peers that vanished without closing (a node gone, a NAT entry dropped).
        .keep_alive_interval(Duration::from_secs(30))
        .max_concurrent_streams(opts.http2_max_concurrent_streams)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    http
}

/// The hyper settings of the admin server: HTTP/1.1 only (probes and scrapers), with every
/// request's headers, including the wait for the next one on a keep-alive connection, due within
/// `header_read_timeout`, so slow or silent clients cannot hold its few connections.
pub fn admin_http(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new()).http1_only();
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .max_buf_size(H1_MAX_BUF);
    http
}

/// The settings of an admin server (plain HTTP/1.1: `/livez`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Copy)]
pub struct AdminSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub close_grace: Duration,
}

/// Binds an admin server's listener. The error names the address.
pub async fn bind_admin(
    addr: std::net::SocketAddr,
    app: Router,
    settings: AdminSettings,
    refused: Counter,
) -> Result<Listener, (std::net::SocketAddr, std::io::Error)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| (addr, e))?;
    Ok(Listener {
        listener,
        tls: None,
        app,
        timeouts: Timeouts {
            first_request: settings.header_read_timeout,
            handshake: settings.header_read_timeout,
            idle: settings.idle_timeout,
            max_age: None,
            close_grace: settings.close_grace,
        },
        max_connections: settings.max_connections,
        http: admin_http(settings.header_read_timeout),
        refused,
    })
}

impl Listener {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `drain` is cancelled, then closes the listener and waits (up to
    /// `timeouts.close_grace`) for the open connections to finish.
    pub async fn run(self, drain: CancellationToken) {
        let Listener {
            listener,
            tls,
            app,
            timeouts,
            max_connections,
            http,
            refused,
        } = self;
        let slots = Arc::new(Semaphore::new(max_connections as usize));
        // hyper-util asserts that a builder is narrowed to one protocol at most once.
        let detects = http.is_http1_available() && http.is_http2_available();
        let shared = Arc::new(Shared {
            tls,
            app,
            timeouts,
            http1: match detects {
                true => http.clone().http1_only(),
                false => http.clone(),
            },
            http2: match detects {
                true => http.clone().http2_only(),
                false => http.clone(),
            },
            http,
        });
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, typically: retrying at once would spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = drain.cancelled() => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused.inc();
                tracing::debug!(%peer, max_connections, "connection limit reached: closing a new connection");
                drop(tcp);
                continue;
            };
            // TCP_NODELAY: small admission responses must not wait for Nagle's algorithm (with
            // HTTP/2, which kube-apiserver uses for webhooks, the p99 otherwise jumps to tens of
            // milliseconds).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            tokio::spawn(connection(tcp, shared.clone(), drain.clone(), slot));
        }
        drop(listener);
        let open = max_connections as usize - slots.available_permits();
        tracing::info!(open, "listener closed: draining connections");
        // Every connection holds a slot until it ends: having them all back means all ended.
        match tokio::time::timeout(timeouts.close_grace, slots.acquire_many(max_connections)).await
        {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                open = max_connections as usize - slots.available_permits(),
                "connections still open after the shutdown grace: dropping them"
            ),
        }
    }
}

/// What every connection of a listener shares.
struct Shared {
    tls: Option<SharedServerConfig>,
    app: Router,
    timeouts: Timeouts,
    /// Detects the protocol from the first bytes (no ALPN).
    http: auto::Builder<TokioExecutor>,
    /// For connections whose protocol ALPN settled.
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Not negotiated by ALPN and no request seen yet.
    Unknown = 0,
    Http1 = 1,
    Http2 = 2,
}

/// Per-connection bookkeeping, shared between the connection's driver and its requests.
struct ConnState {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` at which the last request started or ended.
    last_active_ms: AtomicU64,
    requests: AtomicU64,
    protocol: AtomicU8,
    /// HTTP/1.1: answer with `Connection: close` from now on.
    closing: AtomicBool,
    /// Wakes the driver when the first request starts and whenever nothing is left in flight,
    /// the moments its deadlines change.
    changed: Notify,
}

impl ConnState {
    fn new(accepted: Instant, protocol: Protocol) -> Self {
        ConnState {
            accepted,
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            protocol: AtomicU8::new(protocol as u8),
            closing: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.accepted + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    fn protocol(&self) -> Protocol {
        match self.protocol.load(Ordering::Relaxed) {
            1 => Protocol::Http1,
            2 => Protocol::Http2,
            _ => Protocol::Unknown,
        }
    }

    fn seen_request(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(conn: &Arc<ConnState>, version: Version) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        let first = conn.requests.fetch_add(1, Ordering::Relaxed) == 0;
        let protocol = if version == Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        conn.protocol.store(protocol as u8, Ordering::Relaxed);
        conn.touch();
        if first {
            conn.changed.notify_one();
        }
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// The router as a hyper service that keeps the connection's bookkeeping.
#[derive(Clone)]
struct Tracked {
    app: Router,
    conn: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.conn, request.version());
        let http1 = request.version() < Version::HTTP_2;
        let app = self.app.clone();
        Box::pin(async move {
            let Ok(mut response) = app.oneshot(request.map(Body::new)).await;
            // Read after the handler ran: a drain that began meanwhile still closes this one.
            if http1 && in_flight.0.closing.load(Ordering::Relaxed) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok(response)
        })
    }
}

/// After a failed handshake (tokio-rustls has written the alert): send FIN, then read and drop
/// what the client still sends for a moment. Closing with unread bytes makes the kernel send a
/// reset, which can destroy the alert before the client reads it: an API server with the wrong
/// client certificate would then log "connection reset" instead of "unknown certificate authority".
async fn close_after_alert(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut left = ALERT_LINGER_BYTES;
    let _ = tokio::time::timeout(ALERT_LINGER, async {
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// How long, and for how many bytes, a refused connection is drained before it is closed.
const ALERT_LINGER: Duration = Duration::from_secs(1);
const ALERT_LINGER_BYTES: usize = 256 * 1024;

async fn connection(
    tcp: TcpStream,
    shared: Arc<Shared>,
    drain: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let accepted = Instant::now();
    let first_deadline = after(accepted, shared.timeouts.first_request);
    match &shared.tls {
        None => {
            let conn = Arc::new(ConnState::new(accepted, Protocol::Unknown));
            drive(TokioIo::new(tcp), &shared.http, &shared, conn, drain).await;
        }
        Some(config) => {
            let acceptor = TlsAcceptor::from(config.load_full());
            let handshake_deadline =
                match (after(accepted, shared.timeouts.handshake), first_deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            let handshake = acceptor.accept(tcp).into_fallible();
            let tls = match handshake_deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out: closing the connection");
                        return;
                    }
                },
                None => handshake.await,
            };
            let tls = match tls {
                Ok(tls) => tls,
                Err((e, tcp)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    close_after_alert(tcp).await;
                    return;
                }
            };
            // ALPN decides the protocol; sniffing the first bytes is left to clients without it.
            let (protocol, http) = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => (Protocol::Http2, &shared.http2),
                Some(b"http/1.1") => (Protocol::Http1, &shared.http1),
                _ => (Protocol::Unknown, &shared.http),
            };
            let conn = Arc::new(ConnState::new(accepted, protocol));
            drive(TokioIo::new(tls), http, &shared, conn, drain).await;
        }
    }
}

/// `t + d`, or `None` (never) when that is beyond what an `Instant` can hold.
fn after(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

fn jittered(age: Duration) -> Duration {
    let factor = 1.0 + (fastrand::f64() * 2.0 - 1.0) * AGE_JITTER;
    Duration::try_from_secs_f64(age.as_secs_f64() * factor).unwrap_or(age)
}

fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// Serves one connection and enforces its time limits.
async fn drive<I>(
    io: I,
    http: &auto::Builder<TokioExecutor>,
    shared: &Shared,
    conn: Arc<ConnState>,
    drain: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let timeouts = shared.timeouts;
    let service = Tracked {
        app: shared.app.clone(),
        conn: conn.clone(),
    };
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);

    let first_deadline = after(conn.accepted, timeouts.first_request);
    let age_deadline = timeouts
        .max_age
        .and_then(|age| after(conn.accepted, jittered(age)));
    let linger = DRAIN_LINGER.min(timeouts.close_grace);
    let mut drain_signaled = drain.is_cancelled();
    let mut draining: Option<Instant> = None;
    let mut aged = false;
    // Set once hyper was asked to end the connection (GOAWAY, or close when idle).
    let mut hard_deadline: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if hard_deadline.is_some_and(|d| now >= d) {
            tracing::debug!("connection did not end within the grace period: dropping it");
            return;
        }
        if !conn.seen_request() && first_deadline.is_some_and(|d| now >= d) {
            tracing::debug!("no request within the first-request timeout: closing the connection");
            return;
        }
        let mut wake = vec![hard_deadline];
        if !conn.seen_request() {
            wake.push(first_deadline);
        }
        if hard_deadline.is_none() {
            if draining.is_none() && drain_signaled {
                draining = Some(now);
                conn.closing.store(true, Ordering::Relaxed);
            }
            if !aged && age_deadline.is_some_and(|d| now >= d) {
                tracing::debug!("connection reached its maximum age: ending it");
                aged = true;
                conn.closing.store(true, Ordering::Relaxed);
            }
            let end_at = if (aged || draining.is_some()) && conn.protocol() == Protocol::Http2 {
                // GOAWAY tells the client which requests were not processed, so it can retry
                // them elsewhere: end at once.
                Some(now)
            } else if let Some(since) = draining {
                after(conn.last_active().max(since), linger).filter(|_| conn.idle())
            } else if conn.seen_request() {
                // HTTP/1.1 past its age also waits here: its next response says close.
                after(conn.last_active(), timeouts.idle).filter(|_| conn.idle())
            } else {
                // No request yet: the first-request deadline applies.
                None
            };
            if end_at.is_some_and(|d| now >= d) {
                connection.as_mut().graceful_shutdown();
                hard_deadline = match draining {
                    Some(since) => after(since, timeouts.close_grace),
                    None => after(now, timeouts.close_grace),
                };
                continue;
            }
            wake.push(end_at);
            if !aged {
                wake.push(age_deadline);
            }
        }
        let wake = earliest(wake).unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = drain.cancelled(), if !drain_signaled => drain_signaled = true,
            _ = conn.changed.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let age = Duration::from_secs(600);
        for _ in 0..1000 {
            let j = jittered(age);
            assert!(
                j >= Duration::from_secs(540) && j <= Duration::from_secs(660),
                "{j:?}"
            );
        }
        // Huge ages (a flag set to "100years") must not panic.
        let _ = jittered(Duration::MAX);
    }

    #[test]
    fn zero_durations_are_rejected() {
        assert!(positive_duration("0s").is_err());
        assert_eq!(positive_duration("90s"), Ok(Duration::from_secs(90)));
    }
}

//! Listeners with limits. `axum::serve` runs hyper without a timer, so no header, body or idle
//! timeout applies, and it accepts as many connections as the process has descriptors: idle or
//! slow clients could hold sockets forever and lock everyone out. Here every listener (the REST
//! one, and the gRPC one through [`LimitedIncoming`]) holds a permit per open connection — at
//! the cap, new connections wait in the kernel's backlog, costing no descriptor — and HTTP/1
//! connections that stay silent with no request in flight for the header timeout (a fresh
//! connection that sends nothing, an idle keep-alive one) are closed, as are those that start a
//! request head and do not finish it in time (hyper's header timeout). Body stalls are bounded by
//! the body idle timeout in `common::layers`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use futures::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// How long a client has to send a request's head (also how long an idle keep-alive HTTP/1
/// connection is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one REST listener keeps open at once, when nothing sizes it (a node sizes its
/// caps from its file limit, never below these: `capstan::fd_limit`).
pub const HTTP_CONNECTIONS_MAX: usize = 512;
/// Connections the gRPC listener keeps open at once (cells, peers, gateways, clients), when
/// nothing sizes it (the same).
pub const GRPC_CONNECTIONS_MAX: usize = 256;
/// How long a graceful shutdown waits for open HTTP connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the kernel may queue before they are accepted (a fleet of cells reconnecting at
/// once after a leader change); the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Pause after a failed accept (e.g. out of descriptors) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The limits of one REST listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub connections_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            connections_max: HTTP_CONNECTIONS_MAX,
        }
    }
}

/// Serves `app` on `listener` within `limits` (over TLS when `tls` is given) until `shutdown`
/// resolves, then lets open connections finish (bounded) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    let refusals = Refusals::new("http", limits.connections_max);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = accept_limited(&listener, &permits, &refusals) => a,
        };
        let mut conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let in_flight = Arc::new(AtomicUsize::new(0));
        conn.idle = Some(Idle::new(limits.header_read_timeout, Some(in_flight.clone())));
        let service = TowerToHyperService::new(CountInFlight {
            inner: app.clone(),
            in_flight,
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(conn), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(acceptor) => {
                    // A client that never finishes its handshake holds a permit no longer than a
                    // silent plain client would.
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(conn)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::debug!("open HTTP connections did not finish within the drain timeout");
    }
    Ok(())
}

/// Connections refused at a listener's cap, by `listener` (`http`, `grpc`).
pub const CONNECTIONS_REFUSED: &str = "capstan_listener_connections_refused_total";
/// At most one log line per listener per this long says connections are being refused.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one listener knows of its refusals: how many since it last said so, and when that was.
struct Refusals {
    listener: &'static str,
    connections_max: usize,
    unreported: std::sync::atomic::AtomicU64,
    last_log: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Refusals {
    fn new(listener: &'static str, connections_max: usize) -> Self {
        Self {
            listener,
            connections_max,
            unreported: std::sync::atomic::AtomicU64::new(0),
            last_log: std::sync::Mutex::new(None),
        }
    }

    /// Counts one refusal; logs (with the count since the last line) at most once per interval.
    fn refused(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        metrics::counter!(CONNECTIONS_REFUSED, "listener" => self.listener).increment(1);
        let pending = self.unreported.fetch_add(1, Relaxed) + 1;
        let mut last = self.last_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.unreported.fetch_sub(pending, Relaxed);
        tracing::warn!(
            listener = self.listener,
            connections_max = self.connections_max,
            refused = pending,
            "connections refused: the listener is at its cap (raise --{}-connections-max, and the file \
             limit under it)",
            self.listener
        );
    }
}

/// Accepts the next connection within the cap. At the cap a new connection is accepted and closed
/// at once — refused visibly (counted, logged at most once per interval) rather than left to wait
/// in the kernel's backlog, where a client would see nothing until its own timeout.
async fn accept_limited(listener: &TcpListener, permits: &Arc<Semaphore>, refusals: &Refusals) -> io::Result<Limited> {
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refusals.refused();
            drop(stream);
            continue;
        };
        // Small request/response pairs must not wait for delayed ACKs.
        stream.set_nodelay(true)?;
        return Ok(Limited {
            stream,
            _permit: permit,
            idle: None,
        });
    }
}

/// Binds a listener with a deep accept queue ([`LISTEN_BACKLOG`]), so that a burst of connects is
/// taken rather than dropped by the kernel (the cap is enforced after accept, visibly).
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Closes a connection that has been silent, with no request in flight, for `timeout`.
struct Idle {
    timeout: Duration,
    /// `None`: only the first byte is waited for (gRPC: HTTP/2 keepalive watches the rest).
    in_flight: Option<Arc<AtomicUsize>>,
    sleep: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(timeout: Duration, in_flight: Option<Arc<AtomicUsize>>) -> Self {
        Self {
            timeout,
            in_flight,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn activity(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.sleep.as_mut().reset(deadline);
    }

    /// Called when a read is pending: `Ready(error)` once the connection has idled too long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.in_flight.as_ref().is_some_and(|n| n.load(Ordering::SeqCst) > 0) {
            // A request is being served: its own timeouts apply, not this one.
            self.activity();
            return Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle with no request in flight",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Counts a connection's requests in flight (until each response head is ready).
#[derive(Clone)]
struct CountInFlight<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
}

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S, R> tower::Service<R> for CountInFlight<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlightGuard(self.in_flight.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

/// An accepted connection that holds one of its listener's permits while it is open.
pub struct Limited {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Option<Idle>,
}

impl AsyncRead for Limited {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                match this.idle.as_mut() {
                    // First bytes of a gRPC connection: from here keepalive watches it.
                    Some(idle) if idle.in_flight.is_none() => this.idle = None,
                    Some(idle) => idle.activity(),
                    None => {}
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.idle.as_mut().map(|i| i.poll_expired(cx)) {
                Some(Poll::Ready(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let (Poll::Ready(Ok(_)), Some(idle)) = (&r, this.idle.as_mut()) {
            idle.activity();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The gRPC listener's connections, each holding a permit: at most `connections_max` open, and
/// each closed if it sends nothing within `first_byte_timeout`.
pub struct LimitedIncoming {
    next: Pin<Box<dyn Stream<Item = io::Result<Limited>> + Send>>,
}

impl LimitedIncoming {
    pub fn new(listener: TcpListener, connections_max: usize, first_byte_timeout: Duration) -> Self {
        let permits = Arc::new(Semaphore::new(connections_max.max(1)));
        let listener = Arc::new(listener);
        let refusals = Arc::new(Refusals::new("grpc", connections_max));
        let state = (listener, permits, refusals);
        let next = futures::stream::unfold(state, move |(listener, permits, refusals)| async move {
            loop {
                match accept_limited(&listener, &permits, &refusals).await {
                    Ok(mut c) => {
                        c.idle = Some(Idle::new(first_byte_timeout, None));
                        return Some((Ok(c), (listener, permits, refusals)));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "grpc accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        });
        Self { next: Box::pin(next) }
    }
}

impl Stream for LimitedIncoming {
    type Item = io::Result<Limited>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.next.as_mut().poll_next(cx)
    }
}

/// TLS for the REST listener (rustls with ring): the certificate chain and key from PEM, ALPN for
/// HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("certificate PEM: no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key PEM: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

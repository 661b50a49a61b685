//! Accepting connections, plain or TLS, HTTP/1.1 or HTTP/2, so that no client can hold
//! the hub's connections: the TLS handshake and each request's headers have a deadline
//! (an idle keep-alive connection closes after it too), and the connections that have not
//! yet sent a complete request are capped: admitting one more closes the oldest of them,
//! and so does running out of file descriptors. A client that sends its request at once
//! is never the oldest for long, so it keeps being served while another holds hundreds
//! of half-sent requests open.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::ctx::Settings;

/// The limits of [`serve`], from the hub's [`Settings`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time for the TLS handshake and for each request's headers; `None`: no limit.
    pub header_timeout: Option<Duration>,
    /// Connections without a complete request yet; 0: no cap.
    pub max_pending: usize,
}

impl From<&Settings> for ConnectionLimits {
    fn from(settings: &Settings) -> Self {
        ConnectionLimits {
            header_timeout: (settings.header_timeout_ms > 0)
                .then(|| Duration::from_millis(settings.header_timeout_ms)),
            max_pending: settings.max_pending_connections,
        }
    }
}

/// Serves `app` on `listener` (through TLS when `tls` is given) until `shutdown`
/// resolves; then stops accepting, lets open connections finish their requests, and
/// returns once they have closed, or after `grace` has passed (the rest are closed).
/// Requests carry the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Option<Duration>,
) {
    let pending = Arc::new(Pending::new(limits.max_pending));
    // Cancelled on shutdown: connections finish their requests and close.
    let stopping = CancellationToken::new();
    // Cancelled when the grace period is over: connections close at once.
    let closing = CancellationToken::new();
    // Every connection holds a receiver; all gone = all connections closed.
    let (open_tx, open_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                // Most likely out of file descriptors: free one held by a client that
                // has not sent a request, else wait for one to close.
                if pending.evict_oldest() {
                    tracing::debug!(error = %err, "cannot accept; closed the oldest incomplete connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    tracing::warn!(error = %err, "cannot accept a connection; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            app: app.clone(),
            peer,
            ticket: Arc::new(pending.admit()),
            header_timeout: limits.header_timeout,
            stopping: stopping.clone(),
            closing: closing.clone(),
        };
        let tls = tls.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            connection.run(stream, tls).await;
            drop(open);
        });
    }
    drop(listener);
    stopping.cancel();
    drop(open_rx);
    match grace {
        Some(grace) => {
            if tokio::time::timeout(grace, open_tx.closed()).await.is_err() {
                closing.cancel();
                open_tx.closed().await;
            }
        }
        None => open_tx.closed().await,
    }
}

/// Accept errors that concern one connection only (it was reset before it was accepted).
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs to serve itself.
struct Connection {
    app: Router,
    peer: SocketAddr,
    ticket: Arc<Ticket>,
    header_timeout: Option<Duration>,
    stopping: CancellationToken,
    closing: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let evicted = self.ticket.evicted.clone();
        // The TLS handshake and the first request's headers, from the accept on; later
        // requests have hyper's header deadline.
        // Resolves only if the time is up and the first request has not arrived.
        let ticket = Arc::clone(&self.ticket);
        let first_request = async move {
            if let Some(timeout) = self.header_timeout {
                tokio::time::sleep(timeout).await;
                if !ticket.is_complete() {
                    return;
                }
            }
            std::future::pending().await
        };
        tokio::pin!(first_request);
        let io = match tls {
            None => Either::Left(stream),
            Some(acceptor) => {
                tokio::select! {
                    res = acceptor.accept(stream) => match res {
                        // Boxed: a plain connection's socket (and an upgraded agent
                        // session's) would otherwise carry the room of a TLS session
                        // (~1.2 KiB) for as long as it is open.
                        Ok(stream) => Either::Right(Box::new(stream)),
                        Err(err) => {
                            tracing::debug!(error = %err, "TLS handshake failed");
                            return;
                        }
                    },
                    () = &mut first_request => {
                        tracing::debug!("TLS handshake not finished in time; closing");
                        return;
                    }
                    () = evicted.cancelled() => return,
                    () = self.stopping.cancelled() => return,
                }
            }
        };
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        // HTTP/2 WebSockets (RFC 8441) need the CONNECT protocol.
        builder.http2().enable_connect_protocol();
        let service = ConnService {
            app: self.app,
            peer: self.peer,
            ticket: Arc::clone(&self.ticket),
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(err) = res {
                        tracing::trace!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = &mut first_request => {
                    tracing::debug!("no complete request in time; closing");
                    return;
                }
                // Only an incomplete connection is evicted: a complete one left `Pending`.
                () = evicted.cancelled() => {
                    tracing::debug!("closing a connection that sent no complete request, to admit a newer one");
                    return;
                }
                () = self.stopping.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = self.closing.cancelled() => return,
            }
        }
    }
}

/// The app as one connection calls it: the first request marks the connection complete,
/// and every request learns the peer's address.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    ticket: Arc<Ticket>,
}

impl Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        <Router as Service<Request>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> Self::Future {
        self.ticket.complete();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.call(req)
    }
}

/// The connections that have not sent a complete request yet, oldest first.
struct Pending {
    max: usize,
    waiting: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    next_id: u64,
    by_age: BTreeMap<u64, CancellationToken>,
}

impl Pending {
    fn new(max: usize) -> Self {
        Pending {
            max,
            waiting: Mutex::default(),
        }
    }

    /// Registers a new connection; at the cap, the oldest one is told to close.
    fn admit(self: &Arc<Self>) -> Ticket {
        let evicted = CancellationToken::new();
        let mut state = self.lock();
        if self.max > 0
            && state.by_age.len() >= self.max
            && let Some((_, oldest)) = state.by_age.pop_first()
        {
            oldest.cancel();
        }
        let id = state.next_id;
        state.next_id += 1;
        state.by_age.insert(id, evicted.clone());
        Ticket {
            pending: Arc::clone(self),
            id,
            evicted,
            complete: AtomicBool::new(false),
        }
    }

    /// Tells the oldest incomplete connection to close; false when there is none.
    fn evict_oldest(&self) -> bool {
        match self.lock().by_age.pop_first() {
            Some((_, oldest)) => {
                oldest.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        // The state stays consistent even if a holder panicked: every change is one call.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection's place in [`Pending`] until its first request arrives (or it closes).
struct Ticket {
    pending: Arc<Pending>,
    id: u64,
    /// Cancelled when the connection must close to make room.
    evicted: CancellationToken,
    complete: AtomicBool,
}

impl Ticket {
    fn complete(&self) {
        if !self.complete.swap(true, Ordering::AcqRel) {
            self.pending.lock().by_age.remove(&self.id);
        }
    }

    fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.complete();
    }
}

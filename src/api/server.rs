//! [`serve`]: the HTTP/1 server under the API's router, with the limits `axum::serve`
//! does not offer: a header read timeout (a client that sends half a request line or
//! half its headers is disconnected) and a graceful shutdown that stops accepting,
//! lets running requests answer (long-polls answer at once, see
//! [`ShutdownSignal`](super::ShutdownSignal)) and closes idle connections.
//!
//! The body read timeout, the size limits and the JSON error bodies are the router's
//! (see [`limits`](super::limits)), so the in-process tests see them too.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Requests whose line and headers exceed this are refused by hyper itself (a 431 with
/// no body); below it, [`limits`](super::limits) answers 414 and 431 in JSON.
pub const MAX_HEAD_BYTES: usize = 1024 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// waits for the open connections to finish their requests. A client gets
/// `header_read_timeout` to send each request's line and headers (also the longest an
/// idle kept-alive connection stays open).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %error, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that went away or was too slow: nothing to answer.
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

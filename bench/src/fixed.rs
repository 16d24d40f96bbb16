//! The HTTP ceiling: a minimal hyper server on a current-thread runtime
//! (the front end's setup) answering a fixed body, with no upstream hop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves until killed, rotating over `distinct` bodies of each size (each
/// its own allocation, its bytes differing).
pub async fn run(
    listen: SocketAddr,
    mirrorlist_size: usize,
    metalink_size: usize,
    distinct: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(distinct > 0, "--distinct must be at least 1");
    let listener = TcpListener::bind(listen).await?;
    let bodies = |size: usize| -> Arc<[Bytes]> {
        (0..distinct)
            .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; size]))
            .collect()
    };
    let (list, meta) = (bodies(mirrorlist_size), bodies(metalink_size));
    let next = Arc::new(AtomicUsize::new(0));
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (list, meta, next) = (list.clone(), meta.clone(), next.clone());
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let bodies = if req.uri().path().starts_with("/metalink") {
                &meta
            } else {
                &list
            };
            let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
            async move {
                let mut r = Response::new(Full::new(body));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Ok::<_, Infallible>(r)
            }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

//! The HTTP ceiling: a minimal hyper server on a current-thread runtime
//! (the front end's setup) answering a fixed body, with no upstream hop.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves until killed.
pub async fn run(
    listen: SocketAddr,
    mirrorlist_size: usize,
    metalink_size: usize,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let list = Bytes::from(vec![b'x'; mirrorlist_size]);
    let meta = Bytes::from(vec![b'x'; metalink_size]);
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (list, meta) = (list.clone(), meta.clone());
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let body = if req.uri().path().starts_with("/metalink") {
                meta.clone()
            } else {
                list.clone()
            };
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

//! A loopback HTTP proxy in front of a test server that breaks a share of
//! what passes: connections reset at once, requests dropped unanswered,
//! answers lost after the server acted on the request, delays, throttling
//! (503 SlowDown / 429), answers cut mid-stream. Everything else is
//! forwarded as it is, `Host` header included (S3 signatures cover it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

/// How many requests passed, and how many were broken.
#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub faults: AtomicU64,
}

pub struct Proxy {
    pub port: u16,
    pub counts: Arc<Counts>,
    /// Percent of requests (and of connections) broken.
    pub rate: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: u16, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/xml")
        .body(
            Full::new(Bytes::from_static(text.as_bytes()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

impl Proxy {
    /// Forwards to `127.0.0.1:upstream`, breaking `rate` percent.
    pub fn start(upstream: u16, rate: u64, seed: u64) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let rate = Arc::new(AtomicU64::new(rate));
        let seq = Arc::new(AtomicU64::new(seed | 1));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (c, r) = (counts.clone(), rate.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let roll = next(&seq) % 100;
                if roll < r.load(Ordering::Relaxed) / 3 {
                    // Reset at once: SO_LINGER 0 makes the close an RST.
                    c.faults.fetch_add(1, Ordering::Relaxed);
                    if let Ok(std) = stream.into_std() {
                        let _ = socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO));
                    }
                    continue;
                }
                let (c, r, seq, client) = (c.clone(), r.clone(), seq.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (c, r, seq, client) = (c.clone(), r.clone(), seq.clone(), client.clone());
                        async move { handle(req, upstream, &c, &r, &seq, &client).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy {
            port,
            counts,
            rate,
            _runtime: runtime,
        }
    }

    pub fn set_rate(&self, percent: u64) {
        self.rate.store(percent, Ordering::Relaxed);
    }
}

fn next(seq: &AtomicU64) -> u64 {
    // A shared xorshift: deterministic per seed, whatever the interleaving.
    let mut x = seq.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match seq.compare_exchange(x, y, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return y,
            Err(now) => x = now,
        }
    }
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped by the fault proxy")
    }
}
impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    upstream: u16,
    counts: &Counts,
    rate: &AtomicU64,
    seq: &AtomicU64,
    client: &reqwest::Client,
) -> Result<Response<Body>, Dropped> {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let faulted = next(seq) % 100 < rate.load(Ordering::Relaxed);
    let fault = next(seq) % 6;
    if faulted {
        counts.faults.fetch_add(1, Ordering::Relaxed);
        match fault {
            0 => return Err(Dropped), // no answer: the connection closes
            1 => tokio::time::sleep(Duration::from_millis(300 + next(seq) % 1500)).await,
            2 => {
                return Ok(full(
                    503,
                    "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
                ))
            }
            3 => return Ok(full(429, "<?xml version=\"1.0\"?><Error><Code>TooManyRequests</Code></Error>")),
            _ => {} // 4: the answer is lost after the server acted; 5: cut mid-stream
        }
    }
    let (parts, body) = req.into_parts();
    let url = format!(
        "http://127.0.0.1:{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut out = client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        out = out.header(name, value);
    }
    // A request without a body is forwarded without one (a chunked empty
    // body is a body: servers refuse it on MKCOL).
    let has_body = parts.headers.contains_key("content-length") || parts.headers.contains_key("transfer-encoding");
    if has_body {
        let stream = body.into_data_stream().map(|r| r.map_err(std::io::Error::other));
        out = out.body(reqwest::Body::wrap_stream(stream));
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(_) => return Err(Dropped),
    };
    if faulted && fault == 4 {
        return Err(Dropped);
    }
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers() {
        builder = builder.header(name, value);
    }
    let cut = faulted && fault == 5;
    let mut sent = 0usize;
    let limit = (next(seq) % 4096) as usize;
    let body = resp.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        sent += chunk.len();
        if cut && sent > limit {
            return Err(std::io::Error::other("cut mid-stream by the fault proxy"));
        }
        Ok::<_, std::io::Error>(Frame::data(chunk))
    });
    Ok(builder.body(BodyExt::boxed(StreamBody::new(body))).unwrap())
}

//! A small blocking HTTP client over wasi:http (`outgoing-handler`), enough
//! for WebDAV: one request at a time, the body streamed out, the whole
//! answer read, every wait bounded by the request's timeouts so that a
//! server that dies mid-answer is a network error, not a hang.

use std::io::{Read, Write};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use wasip2::io::streams::OutputStream;

/// Connecting, and waiting for an answer's first byte.
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 60_000_000_000;
/// A read waiting longer than this for the next bytes fails.
const BETWEEN_BYTES_TIMEOUT_NS: u64 = 20_000_000_000;
/// Largest answer body read: listings of big folders, 4 MiB ranges.
const MAX_BODY: usize = 64 << 20;

/// Where requests go: `http(s)://authority`, and the credentials.
#[derive(Clone, Debug)]
pub struct Server {
    pub https: bool,
    pub authority: String,
    /// `Authorization` header value, if any.
    pub authorization: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct Failure(pub String);

impl Server {
    /// Sends `method` to `path` (already encoded, starting with `/`) with
    /// `headers` and `body`, and reads the whole answer.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Answer, Failure> {
        let mut sending = self.start(method, path, headers, Some(body.len()))?;
        sending.write(body)?;
        sending.finish()
    }

    /// Starts a request whose body follows with [`Sending::write`]: of
    /// `length` bytes, or chunked when none is given.
    pub fn start(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        length: Option<usize>,
    ) -> Result<Sending, Failure> {
        let fields = Fields::new();
        let mut all: Vec<(&str, String)> = headers.to_vec();
        if let Some(auth) = &self.authorization {
            all.push(("authorization", auth.clone()));
        }
        // Always when known: a body without a length goes chunked, and a
        // server may refuse a body where it wants none (MKCOL: 415).
        if let Some(n) = length {
            all.push(("content-length", n.to_string()));
        }
        for (name, value) in &all {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| Failure(format!("header {name}: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let method = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_string()),
        };
        let fail = |what: &str| Failure(format!("the request could not be made ({what})"));
        request.set_method(&method).map_err(|_| fail("method"))?;
        request.set_path_with_query(Some(path)).map_err(|_| fail("path"))?;
        let scheme = if self.https { Scheme::Https } else { Scheme::Http };
        request.set_scheme(Some(&scheme)).map_err(|_| fail("scheme"))?;
        request
            .set_authority(Some(&self.authority))
            .map_err(|_| fail("authority"))?;
        let body = request.body().map_err(|_| fail("body"))?;
        let options = RequestOptions::new();
        // A runtime that takes no timeout keeps its own.
        let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
        let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
        let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));
        let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| Failure(describe(&e)))?;
        let stream = body
            .write()
            .map_err(|_| Failure("the request's body cannot be written".into()))?;
        Ok(Sending {
            stream: Some(stream),
            body: Some(body),
            pending,
        })
    }
}

/// A request being sent: its body goes out as it is written.
pub struct Sending {
    // Dropped before `body` is finished, as wasi:http wants.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    pending: FutureIncomingResponse,
}

impl Sending {
    pub fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        let stream = self.stream.as_mut().expect("written before the end");
        // As much at once as the stream takes (its `check-write`): small
        // writes become small packets, each waiting on the peer's ack.
        match stream.write_all(data) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The connection's own failure (refused, reset) says more.
                self.stream = None;
                Err(match self.answer() {
                    Err(why) => why,
                    Ok(_) => Failure(format!("sending the request broke off: {e}")),
                })
            }
        }
    }

    /// Waits for the answer's head.
    fn answer(&self) -> Result<wasip2::http::types::IncomingResponse, Failure> {
        loop {
            match self.pending.get() {
                Some(Ok(Ok(answer))) => return Ok(answer),
                Some(Ok(Err(e))) => return Err(Failure(describe(&e))),
                Some(Err(())) => return Err(Failure("the answer was taken twice".into())),
                None => self.pending.subscribe().block(),
            }
        }
    }

    /// Ends the body and reads the whole answer.
    pub fn finish(mut self) -> Result<Answer, Failure> {
        if let Some(stream) = self.stream.take() {
            // A body whose length was said closes once it is all written
            // (`closed` then is no failure); a broken connection shows in
            // the answer below.
            match stream.blocking_flush() {
                Ok(()) | Err(wasip2::io::streams::StreamError::Closed) => {}
                Err(e) => return Err(Failure(format!("sending the request broke off: {e:?}"))),
            }
        }
        let body = self.body.take().expect("finished once");
        OutgoingBody::finish(body, None).map_err(|e| Failure(describe(&e)))?;
        let answer = self.answer()?;
        let status = answer.status();
        let headers = answer.headers().entries();
        let incoming = answer.consume().map_err(|_| Failure("the answer has no body".into()))?;
        let mut body = Vec::new();
        {
            let mut stream = incoming
                .stream()
                .map_err(|_| Failure("the answer's body cannot be read".into()))?;
            (&mut stream)
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .map_err(|e| Failure(format!("the answer broke off: {e}")))?;
        }
        if body.len() > MAX_BODY {
            return Err(Failure(format!("an answer of more than {MAX_BODY} bytes")));
        }
        drop(IncomingBody::finish(incoming));
        Ok(Answer { status, headers, body })
    }
}

fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::DnsTimeout | ErrorCode::DnsError(_) => format!("the server's name could not be resolved ({e:?})"),
        ErrorCode::ConnectionRefused => "the server refused the connection".into(),
        ErrorCode::ConnectionTimeout => "connecting to the server timed out".into(),
        ErrorCode::ConnectionReadTimeout => "the server stopped answering".into(),
        ErrorCode::HttpRequestDenied => "this runtime lets the component make no such request".into(),
        other => format!("{other:?}"),
    }
}

/// `user:password` as a Basic `Authorization` value.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_base64_of_the_pair() {
        assert_eq!(
            super::basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(super::basic_auth("a", ""), "Basic YTo=");
        assert_eq!(super::basic_auth("ab", "c"), "Basic YWI6Yw==");
    }
}

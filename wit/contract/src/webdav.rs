//! The WebDAV cloud's wire contract, shared by every writer of one cloud
//! (the native host, the WASI adapter): how keys are spelt in URLs, what
//! `PROPFIND` and `LOCK` send and how their answers read, and where and how
//! conditional writes take their locks (`host/src/cloud/webdav.rs` tells the
//! protocol). Two hosts that spelt any of it differently would race.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::{CloudErrorKind, CloudObject, DEAD_WRITER_GRACE, LOCKS_DIR, LOCK_STALE};

/// Characters escaped in a path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'/');

/// `key` as a URL path below the base: each segment percent-encoded.
pub fn encode_key(key: &str) -> String {
    let parts: Vec<String> = key
        .split('/')
        .map(|p| utf8_percent_encode(p, SEGMENT).to_string())
        .collect();
    parts.join("/")
}

/// The key an href names, below `base_path` (the base URL's path, decoded,
/// ending with `/`): `None` outside the base or for the base itself, `Err`
/// with the name shown lossily when it is not UTF-8.
pub fn key_of(base_path: &str, href: &str) -> Option<Result<String, String>> {
    // An absolute href: its path is what follows the authority.
    let path = match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = match percent_decode_str(path).decode_utf8() {
        Ok(d) => d.to_string(),
        Err(_) => {
            let lossy = percent_decode_str(path).decode_utf8_lossy().to_string();
            let rel = lossy.strip_prefix(base_path)?.trim_end_matches('/').to_string();
            return Some(Err(rel));
        }
    };
    let rel = decoded
        .strip_prefix(base_path)
        .or_else(|| (decoded.trim_end_matches('/') == base_path.trim_end_matches('/')).then_some(""))?;
    let rel = rel.trim_end_matches('/');
    (!rel.is_empty()).then(|| Ok(rel.to_string()))
}

/// What a listing asks of each name.
pub const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getetag/><D:getlastmodified/></D:prop></D:propfind>"#;
/// What asking for a resource's WebDAV locks sends.
pub const LOCKDISCOVERY_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>"#;

/// The body of an exclusive write `LOCK` taken as `owner`.
pub fn lockinfo_body(owner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner></D:lockinfo>"#
    )
}

/// The lock folder a conditional write or delete of `key` takes: one of
/// 4096, by the first three hex digits of the key's sha256.
pub fn lock_of(key: &str) -> String {
    use sha2::Digest;
    let name = format!("{:x}", sha2::Sha256::digest(key.as_bytes()));
    format!("{LOCKS_DIR}/{}", &name[..3])
}

/// The start of the owner markers one writer process puts in lock
/// folders: `<device>~<process>~` (`process` tells two runs of one device
/// apart: a pid, a start time).
pub fn owner_prefix(device: &str, process: &str) -> String {
    format!("{device}~{process}~")
}

/// An owner marker's name: the writer's prefix, when it took the lock, and
/// a sequence number.
pub fn owner_marker(prefix: &str, now_ms: u64, seq: u64) -> String {
    format!("{prefix}{now_ms}~{seq}")
}

/// When a marker's lock was taken (0 when the name says no time).
pub fn marker_since(name: &str) -> u64 {
    name.split('~').nth(2).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// Whether a lock folder holding `owners` (marker names and times) was
/// left by a killed writer: one of this device's other processes after a
/// grace, anyone's after [`LOCK_STALE`].
pub fn lock_is_stale(owners: &[(String, u64)], device: &str, me: &str, now_ms: u64) -> bool {
    owners.iter().any(|(owner, since)| {
        let age = now_ms.saturating_sub(*since);
        let dead_here = owner.starts_with(&format!("{device}~"))
            && !owner.starts_with(me)
            && age > DEAD_WRITER_GRACE.as_millis() as u64;
        dead_here || age > LOCK_STALE.as_millis() as u64
    })
}

/// What an HTTP status means for a cloud call.
pub fn status_kind(status: u16) -> CloudErrorKind {
    match status {
        404 | 410 => CloudErrorKind::NotFound,
        412 => CloudErrorKind::PreconditionFailed,
        // 401: the credentials are refused (every request would be); 403:
        // this one resource is forbidden, which fails that file alone.
        401 => CloudErrorKind::Unauthorized,
        507 | 413 => CloudErrorKind::StorageFull,
        429 | 503 => CloudErrorKind::Throttled,
        500..=599 => CloudErrorKind::Network,
        _ => CloudErrorKind::Other,
    }
}

/// Whether a request that may be sent again is, after this answer: server
/// trouble and throttling are waited out.
pub fn worth_retrying(status: u16) -> bool {
    (status >= 500 && status != 507) || status == 429
}

/// One `<response>` of a multistatus answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DavEntry {
    /// The href as sent (percent-encoded, maybe absolute).
    pub href: String,
    pub collection: bool,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub modified_ms: Option<u64>,
}

impl DavEntry {
    /// The object a file's entry describes, at `key`; a server that gives
    /// no etag gets one made of the size and time.
    pub fn object(&self, key: &str) -> CloudObject {
        let modified_ms = self.modified_ms.unwrap_or(0);
        let size = self.size.unwrap_or(0);
        CloudObject {
            path: key.to_string(),
            size,
            etag: self
                .etag
                .clone()
                .unwrap_or_else(|| format!("weak:{size}-{modified_ms}")),
            version: None,
            content_hash: None,
            modified_ms,
        }
    }
}

/// Reads a multistatus answer: every `<response>` with its href and, from
/// its successful `<propstat>`, what it is. Never panics, whatever it is given.
pub fn parse_multistatus(xml: &[u8]) -> Result<Vec<DavEntry>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut entry = DavEntry::default();
    // Properties of the current propstat, kept only if its status is 2xx.
    let mut props = DavEntry::default();
    let mut status_ok = true;
    let mut text = String::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref().as_ref()).to_ascii_lowercase();
                match name.as_str() {
                    "response" => entry = DavEntry::default(),
                    "propstat" => {
                        props = DavEntry::default();
                        status_ok = true;
                    }
                    _ => {}
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref().as_ref()).to_ascii_lowercase();
                if name == "collection" && path.last().is_some_and(|p| p == "resourcetype") {
                    props.collection = true;
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let c = match &*r {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => '\u{fffd}',
                    };
                    text.push(c);
                }
            }
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err("a closing tag without an opening one".into());
                };
                let value = std::mem::take(&mut text);
                let value = value.trim();
                match name.as_str() {
                    "href" if path.last().is_some_and(|p| p == "response") => entry.href = value.to_string(),
                    "getcontentlength" => props.size = value.parse().ok(),
                    "getetag" if !value.is_empty() => {
                        // Apache marks an etag weak while the file's mtime is
                        // the current second: the tag itself is what counts.
                        props.etag = Some(value.strip_prefix("W/").unwrap_or(value).to_string());
                    }
                    "getlastmodified" => {
                        props.modified_ms = jiff::fmt::rfc2822::parse(value)
                            .ok()
                            .map(|z| z.timestamp().as_millisecond().max(0) as u64);
                    }
                    "status" if path.last().is_some_and(|p| p == "propstat") => {
                        status_ok = value.split_whitespace().nth(1).is_some_and(|c| c.starts_with('2'));
                    }
                    "propstat" if status_ok => {
                        entry.collection |= props.collection;
                        entry.size = entry.size.or(props.size);
                        entry.etag = entry.etag.take().or(props.etag.take());
                        entry.modified_ms = entry.modified_ms.or(props.modified_ms);
                    }
                    "response" if !entry.href.is_empty() => out.push(std::mem::take(&mut entry)),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

/// The active locks a `lockdiscovery` answer names: (owner text, token).
/// Never panics, whatever it is given.
pub fn parse_lockdiscovery(xml: &[u8]) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let (mut owner, mut token) = (String::new(), String::new());
    let mut out = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref().as_ref()).to_ascii_lowercase();
                if name == "activelock" {
                    owner.clear();
                    token.clear();
                }
                path.push(name);
            }
            Ok(Event::Text(t)) => {
                let text = t.xml10_content();
                if path.iter().any(|p| p == "owner") {
                    owner.push_str(text.trim());
                } else if path.last().is_some_and(|p| p == "href") && path.iter().any(|p| p == "locktoken") {
                    token.push_str(text.trim());
                }
            }
            Ok(Event::End(_)) => {
                let closed = path.pop();
                if closed.as_deref() == Some("activelock") && !token.is_empty() {
                    out.push((owner.clone(), format!("<{token}>")));
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    out
}
/// What a refused request says: `key: the server answered 401 …`, or, for
/// the configured folder itself (an empty key), so in words.
pub fn status_message(what: &str, status: impl std::fmt::Display) -> String {
    if what.is_empty() {
        format!("the server answered {status} for the configured folder")
    } else {
        format!("{what}: the server answered {status}")
    }
}

//! WebDAV clouds (Apache mod_dav, Nextcloud, rclone's server, ...) over
//! reqwest, with the multistatus answers read by quick-xml.
//!
//! - Listings walk one collection per `PROPFIND` (`Depth: 1`), as servers
//!   allow; names that are not UTF-8 or not usable are reported, not dropped.
//! - Reads are ranged `GET`s; every request has a connect timeout and every
//!   read a gap timeout, so a server that dies mid-stream ends the transfer
//!   with a network error instead of a hang.
//! - Writes stream the body (chunked), so any size goes up with bounded
//!   memory, to a staging name under `/.cloudsync/staging/<device>/` (where
//!   no user's name can be), then `MOVE` it into place.
//! - A conditional write or delete holds a lock for its key while it checks
//!   the etag and moves: the folder `/.cloudsync/locks/<3 hex digits of the
//!   key's sha256>/` (one of 4096), made with `MKCOL`, which a server grants
//!   to one writer only (it is a `mkdir`), with a marker naming the writer
//!   and the time in it, so that one left by a killed writer can be told
//!   and cleared. Every cloudsync writer takes the same lock, so for them
//!   the check and the move are one step. (WebDAV's own `LOCK` is not
//!   used: Apache grants it to two racers now and then; `If` headers and
//!   `Overwrite: F` are checked before the move, not atomically with it.)
//!   Against other programs, the object's etag right after the move must be
//!   the staged one: a write replaced in that instant reports
//!   `PreconditionFailed`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cloudsync_contract::webdav::{
    encode_key, lock_is_stale, lock_of, lockinfo_body, marker_since, owner_marker, owner_prefix, status_kind,
    worth_retrying, LOCKDISCOVERY_BODY, PROPFIND_BODY,
};
pub use cloudsync_contract::webdav::{parse_lockdiscovery, parse_multistatus, DavEntry};
use futures::{StreamExt, TryStreamExt};
use percent_encoding::percent_decode_str;
use reqwest::{Method, StatusCode};
use tokio_util::io::{ReaderStream, StreamReader};

use super::{
    check_key, ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, ListCursor, Listed, Precondition,
    StagingNames, ENGINE_DIR, LOCKS_DIR, LOCK_STALE, LOCK_SWEEP_AGE, LOCK_WAIT, STAGING_DIR,
};

/// Tries of a request that may be sent again (reads, listings, folder
/// creation) before a network failure is reported.
const TRIES: u32 = 4;
/// Large objects are read in ranges of this size, [`RANGES_AT_ONCE`] at
/// once (16 MiB in flight).
const RANGE: u64 = 4 << 20;
const RANGES_AT_ONCE: usize = 4;
/// A read waiting longer than this for the next bytes fails.
const READ_GAP: Duration = Duration::from_secs(20);
/// Tries of a request whose answer timed out: a server that accepts and
/// then says nothing is not waited on four times over.
const TIMED_OUT_TRIES: u32 = 2;
/// A request (but for a body's transfer) taking longer than this fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A WebDAV server's folder playing the cloud.
pub struct WebDavCloud {
    client: reqwest::Client,
    /// `http(s)://host[:port]/path/` (ending with `/`).
    base: String,
    /// The base's path, decoded, as hrefs give it (`/path/`).
    base_path: String,
    auth: Option<(String, String)>,
    describe: String,
    names: StagingNames,
    /// Collections and lock sentinels known to exist (made or listed).
    known: Mutex<HashSet<String>>,
    /// Collections are made one at a time.
    mkcol: tokio::sync::Mutex<()>,
    /// The server cannot make lock folders: writes go without them.
    no_locks: std::sync::atomic::AtomicBool,
}

/// A WebDAV listing, one collection per `PROPFIND`, in byte order of the
/// keys (a collection's contents come where its name followed by `/`
/// sorts), holding only the listings of the collections it is in.
struct DavWalk {
    prefix: String,
    started: bool,
    /// The collections being read, innermost last, each with its names
    /// still to give, in key order.
    stack: Vec<std::vec::IntoIter<DavItem>>,
}

enum DavItem {
    Collection(String),
    Name(Listed),
}

impl DavWalk {
    fn new(prefix: &str) -> Self {
        DavWalk {
            prefix: prefix.to_string(),
            started: false,
            stack: Vec::new(),
        }
    }

    async fn next_page(&mut self, dav: &WebDavCloud, max: usize) -> Result<Vec<Listed>, CloudError> {
        if !self.started {
            self.started = true;
            let start = self.prefix.rfind('/').map_or("", |i| &self.prefix[..i]).to_string();
            if !start.is_empty() {
                check_key(&start)?;
            }
            self.enter(dav, &start).await?;
        }
        let mut page = Vec::new();
        while page.len() < max {
            let Some(top) = self.stack.last_mut() else { break };
            match top.next() {
                None => {
                    self.stack.pop();
                }
                Some(DavItem::Collection(key)) => self.enter(dav, &key).await?,
                Some(DavItem::Name(listed)) => page.push(listed),
            }
        }
        Ok(page)
    }

    /// Reads the collection `dir` and puts its names on top.
    async fn enter(&mut self, dav: &WebDavCloud, dir: &str) -> Result<(), CloudError> {
        let Some(entries) = dav.propfind(dir, "1").await? else {
            return Ok(()); // a collection that is not there holds nothing
        };
        dav.known.lock().unwrap().insert(dir.to_string());
        let prefix = &self.prefix;
        let mut items = Vec::new();
        for e in entries {
            let key = match dav.key_of(&e.href) {
                None => continue,
                Some(Ok(k)) => k,
                Some(Err(lossy)) => {
                    let why = "the name is not valid UTF-8".to_string();
                    items.push((lossy.clone(), DavItem::Name(Listed::Skipped { key: lossy, why })));
                    continue;
                }
            };
            // Only what lies directly in this collection (some servers say more).
            if key == dir || key.rsplit_once('/').map_or("", |(p, _)| p) != dir {
                continue;
            }
            if e.collection {
                // The engine's own folder is walked only when asked for.
                if dir.is_empty() && key == ENGINE_DIR && !prefix.starts_with(ENGINE_DIR) {
                    continue;
                }
                if key.starts_with(prefix.as_str()) || prefix.starts_with(&format!("{key}/")) {
                    items.push((format!("{key}/"), DavItem::Collection(key)));
                }
            } else {
                let listed = match check_key(&key) {
                    Ok(()) => Listed::Object(dav.object(&key, &e)),
                    Err(_) => Listed::Skipped {
                        key: key.clone(),
                        why: "not a usable file name".into(),
                    },
                };
                items.push((key, DavItem::Name(listed)));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|a, b| a.0 == b.0);
        self.stack
            .push(items.into_iter().map(|(_, item)| item).collect::<Vec<_>>().into_iter());
        Ok(())
    }
}

struct WebDavListing {
    dav: Arc<WebDavCloud>,
    walk: DavWalk,
}

#[async_trait]
impl ListCursor for WebDavListing {
    async fn next_page(&mut self, max: usize) -> Result<Vec<Listed>, CloudError> {
        self.walk.next_page(&self.dav, max).await
    }
}

/// A held lock: its folder, the marker naming this writer, and the
/// WebDAV lock token on the folder (where the server has locking).
struct Held {
    url: String,
    marker: String,
    token: Option<String>,
}

impl WebDavCloud {
    /// `base`: `http(s)://host[:port]/path`.
    pub fn new(base: &str, auth: Option<(String, String)>, describe: String) -> Result<Self, String> {
        let url = reqwest::Url::parse(base).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("{base} is not an http(s) URL with a host"));
        }
        let mut base = base.trim_end_matches('/').to_string();
        base.push('/');
        let base_path = percent_decode_str(url.path().trim_end_matches('/'))
            .decode_utf8()
            .map_err(|e| e.to_string())?
            .to_string()
            + "/";
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_GAP)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebDavCloud {
            client,
            base,
            base_path,
            auth,
            describe,
            names: StagingNames::default(),
            known: Mutex::new(HashSet::new()),
            mkcol: tokio::sync::Mutex::new(()),
            no_locks: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn url(&self, key: &str) -> String {
        format!("{}{}", self.base, encode_key(key))
    }

    /// A large object's bytes `from..size`, read in ranges of [`RANGE`],
    /// [`RANGES_AT_ONCE`] requests in flight, given in order. A range that
    /// fails fails the read (the engine retries from what arrived).
    fn ranged(&self, key: &str, url: String, from: u64, size: u64) -> ByteStream {
        let starts = (from..size).step_by(RANGE as usize);
        let (client, auth, what) = (self.client.clone(), self.auth.clone(), key.to_string());
        let chunks = futures::stream::iter(starts)
            .map(move |start| {
                let last = (start + RANGE).min(size) - 1;
                let r = authorized(&client, &auth, Method::GET, &url).header("Range", format!("bytes={start}-{last}"));
                let what = what.clone();
                async move {
                    let broken = |why: String| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why);
                    let answer = r
                        .send()
                        .await
                        .map_err(|e| broken(format!("reading {what}: {}", chain(&e))))?;
                    if answer.status() != StatusCode::PARTIAL_CONTENT {
                        return Err(broken(format!(
                            "reading {what} at {start}: the server answered {}",
                            answer.status()
                        )));
                    }
                    let body = answer
                        .bytes()
                        .await
                        .map_err(|e| broken(format!("reading {what}: {}", chain(&e))))?;
                    if body.len() as u64 != last - start + 1 {
                        return Err(broken(format!(
                            "reading {what} at {start}: {} bytes came for {}",
                            body.len(),
                            last - start + 1
                        )));
                    }
                    Ok(body)
                }
            })
            .buffered(RANGES_AT_ONCE);
        Box::pin(StreamReader::new(chunks))
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        authorized(&self.client, &self.auth, method, url)
    }

    /// Sends a request that may be sent again, retrying network failures
    /// and 5xx answers with backoff.
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CloudError> {
        let mut delay = Duration::from_millis(100);
        let mut last: Option<CloudError> = None;
        let mut timeouts = 0;
        for attempt in 0..TRIES {
            if attempt > 0 {
                if let Some(why) = &last {
                    tracing::info!(target: "cloudsync::cloud", what, attempt, wait_ms = delay.as_millis() as u64, "retrying: {}", why.message);
                }
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            match make().timeout(REQUEST_TIMEOUT).send().await {
                Err(e) if e.is_timeout() => {
                    last = Some(send_error(what, &e));
                    timeouts += 1;
                    if timeouts >= TIMED_OUT_TRIES {
                        break;
                    }
                }
                // Server trouble and throttling are waited out (with backoff).
                Ok(r) if worth_retrying(r.status().as_u16()) => {
                    last = Some(status_error(what, r.status()));
                }
                Ok(r) => return Ok(r),
                Err(e) => last = Some(send_error(what, &e)),
            }
        }
        Err(last.expect("tried at least once"))
    }

    async fn propfind(&self, key: &str, depth: &str) -> Result<Option<Vec<DavEntry>>, CloudError> {
        let url = if key.is_empty() {
            self.base.clone()
        } else {
            self.url(key)
        };
        let method = Method::from_bytes(b"PROPFIND").expect("a method");
        let r = self
            .send(key, || {
                self.request(method.clone(), &url)
                    .header("Depth", depth)
                    .header("Content-Type", "application/xml; charset=utf-8")
                    .body(PROPFIND_BODY)
            })
            .await?;
        match r.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.as_u16() == 207 => {}
            s => return Err(status_error(key, s)),
        }
        let body = r.bytes().await.map_err(|e| send_error(key, &e))?;
        parse_multistatus(&body).map(Some).map_err(|e| {
            CloudError::new(
                CloudErrorKind::Other,
                format!("{key}: a listing the server sent is not valid: {e}"),
            )
        })
    }

    /// The key an href names (`None`: outside the base, or the base itself),
    /// or why it cannot be one.
    fn key_of(&self, href: &str) -> Option<Result<String, String>> {
        cloudsync_contract::webdav::key_of(&self.base_path, href)
    }

    fn object(&self, key: &str, e: &DavEntry) -> CloudObject {
        let o = e.object(key);
        CloudObject {
            key: o.path,
            size: o.size,
            etag: o.etag,
            version: o.version,
            content_hash: o.content_hash,
            modified_ms: o.modified_ms,
        }
    }

    async fn stat_file(&self, key: &str) -> Result<CloudObject, CloudError> {
        let entries = self
            .propfind(key, "0")
            .await?
            .ok_or_else(|| CloudError::not_found(key))?;
        match entries.first() {
            Some(e) if !e.collection => Ok(self.object(key, e)),
            _ => Err(CloudError::not_found(key)),
        }
    }

    /// Makes the collections above `key` (each once per process). One at a
    /// time: servers answer a second MKCOL racing the first with an error.
    async fn make_parents(&self, key: &str) -> Result<(), CloudError> {
        let _one = self.mkcol.lock().await;
        let parts: Vec<&str> = key.split('/').collect();
        let mut dir = String::new();
        for part in &parts[..parts.len() - 1] {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(part);
            if self.known.lock().unwrap().contains(&dir) {
                continue;
            }
            let url = format!("{}/", self.url(&dir));
            let method = Method::from_bytes(b"MKCOL").expect("a method");
            let r = self.send(&dir, || self.request(method.clone(), &url)).await?;
            match r.status().as_u16() {
                201 => {}
                409 => {
                    return Err(CloudError::new(
                        CloudErrorKind::Other,
                        format!("{key}: a file is where a folder must be ({dir})"),
                    ))
                }
                // There already (405), or made by another client meanwhile:
                // it must be a collection now.
                s => match self.propfind(&dir, "0").await? {
                    Some(e) if e.first().is_some_and(|e| e.collection) => {}
                    Some(_) => {
                        return Err(CloudError::new(
                            CloudErrorKind::Other,
                            format!("{key}: a file is where a folder must be ({dir})"),
                        ))
                    }
                    None => return Err(status_error(&dir, StatusCode::from_u16(s).expect("a status"))),
                },
            }
            self.known.lock().unwrap().insert(dir.clone());
        }
        Ok(())
    }

    /// Takes `key`'s lock, waiting while another writer holds it: its lock
    /// folder made with `MKCOL` (granted once where the server's folders
    /// are `mkdir`s: Apache), an owner marker put in it, then the folder
    /// locked with an exclusive `LOCK` (granted once where the server's
    /// lock table is atomic: rclone's). `None` when the server cannot make
    /// folders there.
    async fn lock(&self, key: &str) -> Result<Option<Held>, CloudError> {
        if self.no_locks.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let lock = lock_of(key);
        self.make_parents(&lock).await?;
        let url = format!("{}/", self.url(&lock));
        let mkcol = Method::from_bytes(b"MKCOL").expect("a method");
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut delay = Duration::from_millis(20);
        let me = owner_prefix(self.names.device(), &std::process::id().to_string());
        let wait = |delay: &mut Duration| {
            let d = *delay;
            *delay = (*delay * 2).min(Duration::from_millis(500));
            tokio::time::sleep(d)
        };
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(CloudError::new(
                    CloudErrorKind::Throttled,
                    format!("{key}: another writer holds it; try again later"),
                ));
            }
            let made = self.request(mkcol.clone(), &url).timeout(REQUEST_TIMEOUT).send().await;
            let status = match made {
                Ok(r) => r.status().as_u16(),
                // The answer was lost: made by us if nobody claims it soon.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    match self.lock_owners(&lock).await {
                        Some(owners) if owners.is_empty() => 201,
                        _ => 405,
                    }
                }
            };
            match status {
                201 => {}
                // Held: by a dead process of this device, by a writer killed
                // long ago (both cleared), or by a live one (waited for).
                405 | 403 | 409 | 423 => {
                    let owners = self.lock_owners(&lock).await.unwrap_or_default();
                    if lock_is_stale(&owners, self.names.device(), &me, Self::now_ms()) {
                        self.clear_lock(&lock, &url).await;
                    } else {
                        wait(&mut delay).await;
                    }
                    continue;
                }
                501 => {
                    // No folders can be made there: the etag checks around
                    // the move stand alone.
                    self.no_locks.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
                s if s == 429 || s >= 500 => {
                    wait(&mut delay).await;
                    continue;
                }
                s => return Err(status_error(key, StatusCode::from_u16(s).expect("a status"))),
            }
            let seq = self
                .names
                .next()
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let owner = owner_marker(&me, Self::now_ms(), seq);
            let marker = format!("{lock}/{owner}");
            let mu = self.url(&marker);
            self.send(&marker, || self.request(Method::PUT, &mu).body(Vec::<u8>::new()))
                .await?;
            match self.lock_folder(&url, &owner).await {
                Some(Ok(token)) => return Ok(Some(Held { url, marker: mu, token })),
                // Another writer was granted the folder too, and holds its
                // lock: ours goes, and we wait for it.
                Some(Err(())) => {
                    let _ = self.request(Method::DELETE, &mu).timeout(REQUEST_TIMEOUT).send().await;
                    wait(&mut delay).await;
                }
                // No WebDAV locking: the folder alone is the lock.
                None => {
                    return Ok(Some(Held {
                        url,
                        marker: mu,
                        token: None,
                    }))
                }
            }
        }
    }

    /// An exclusive `LOCK` on the lock folder, as `owner`: its token, `Err`
    /// when another holds it, `None` when the server has no locking.
    async fn lock_folder(&self, url: &str, owner: &str) -> Option<Result<Option<String>, ()>> {
        let method = Method::from_bytes(b"LOCK").expect("a method");
        let body = lockinfo_body(owner);
        for _ in 0..TRIES {
            let sent = self
                .request(method.clone(), url)
                .header("Depth", "0")
                .header("Timeout", format!("Second-{}", LOCK_STALE.as_secs()))
                .header("Content-Type", "application/xml; charset=utf-8")
                .body(body.clone())
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    let token = r
                        .headers()
                        .get("Lock-Token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    return Some(Ok(token));
                }
                Ok(r) if r.status().as_u16() == 423 => {
                    // Ours all the same if an earlier attempt's answer was lost.
                    return match self.lock_holders(url).await.into_iter().find(|(o, _)| o == owner) {
                        Some((_, token)) => Some(Ok(Some(token))),
                        None => Some(Err(())),
                    };
                }
                Ok(r) if matches!(r.status().as_u16(), 400 | 405 | 412 | 501) => return None,
                Ok(_) | Err(_) => {
                    if let Some((_, token)) = self.lock_holders(url).await.into_iter().find(|(o, _)| o == owner) {
                        return Some(Ok(Some(token)));
                    }
                }
            }
        }
        Some(Err(()))
    }

    /// Who holds WebDAV locks on `url` now, and their tokens.
    async fn lock_holders(&self, url: &str) -> Vec<(String, String)> {
        let method = Method::from_bytes(b"PROPFIND").expect("a method");
        let body = LOCKDISCOVERY_BODY;
        let Ok(r) = self
            .request(method, url)
            .header("Depth", "0")
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
        else {
            return Vec::new();
        };
        r.bytes().await.map(|x| parse_lockdiscovery(&x)).unwrap_or_default()
    }

    /// Clears a lock a killed writer left: its WebDAV lock, then the folder.
    async fn clear_lock(&self, lock: &str, url: &str) {
        for (_, token) in self.lock_holders(url).await {
            self.unlock_token(url, &token).await;
        }
        let _ = lock;
        let _ = self.request(Method::DELETE, url).timeout(REQUEST_TIMEOUT).send().await;
    }

    async fn unlock_token(&self, url: &str, token: &str) {
        let method = Method::from_bytes(b"UNLOCK").expect("a method");
        let _ = self
            .request(method, url)
            .header("Lock-Token", token)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The markers in a lock folder: (owner, since ms). `None` when the
    /// folder cannot be listed; a folder without a marker yet counts as
    /// held since it was made.
    async fn lock_owners(&self, lock: &str) -> Option<Vec<(String, u64)>> {
        let entries = self.propfind(lock, "1").await.ok()??;
        let mut owners = Vec::new();
        let mut made = None;
        for e in entries {
            match self.key_of(&e.href) {
                Some(Ok(k)) if k == lock => made = e.modified_ms,
                Some(Ok(k)) => {
                    let name = k.rsplit('/').next().unwrap_or_default().to_string();
                    let since = marker_since(&name);
                    owners.push((name, since));
                }
                _ => {}
            }
        }
        if owners.is_empty() {
            if let Some(made) = made.filter(|m| Self::now_ms().saturating_sub(*m) > LOCK_STALE.as_millis() as u64) {
                owners.push((String::new(), made));
            }
        }
        Some(owners)
    }

    /// Releases a lock: its WebDAV lock, then its folder, marker and all.
    async fn unlock(&self, held: Option<Held>) {
        let Some(held) = held else { return };
        if let Some(token) = &held.token {
            self.unlock_token(&held.url, token).await;
        }
        for _ in 0..2 {
            // Tried twice: a lock left behind only goes stale.
            let r = self
                .request(Method::DELETE, &held.url)
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await;
            match r.map(|r| r.status().as_u16()) {
                Ok(s) if (200..300).contains(&s) => return,
                // No folder there: a `LOCK` that met no folder (another
                // writer had just removed it) makes an empty file at its
                // name on some servers (RFC 4918's lock-null); it goes too.
                Ok(404) => {
                    let file = held.url.trim_end_matches('/');
                    let _ = self.request(Method::DELETE, file).timeout(REQUEST_TIMEOUT).send().await;
                    return;
                }
                _ => {}
            }
        }
        let _ = self
            .request(Method::DELETE, &held.marker)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
    }

    /// Streams `data` to `key` in one `PUT`; returns the bytes sent.
    async fn put_body(&self, key: &str, data: ByteStream) -> Result<(), CloudError> {
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(data, 1 << 20));
        let r = self
            .request(Method::PUT, &self.url(key))
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(key, &e))?;
        match r.status() {
            s if s.is_success() => Ok(()),
            s => Err(status_error(key, s)),
        }
    }

    /// Under the key's lock: checks the condition and moves the staged
    /// object into place; then it must be there as staged.
    async fn check_and_move(
        &self,
        key: &str,
        staged: &str,
        staged_obj: &CloudObject,
        precondition: &Precondition,
    ) -> Result<CloudObject, CloudError> {
        // A collection at the name is never moved over (`Overwrite: T`
        // would delete it), and is a failure to show, not a race to retry.
        let current = match self.propfind(key, "0").await? {
            None => None,
            Some(entries) => match entries.first() {
                Some(e) if !e.collection => Some(self.object(key, e)),
                _ => {
                    return Err(CloudError::new(
                        CloudErrorKind::Other,
                        format!("{key}: a folder is where the file must be; it was left alone"),
                    ))
                }
            },
        };
        precondition.check(key, current.ok_or_else(|| CloudError::not_found(key)))?;
        let method = Method::from_bytes(b"MOVE").expect("a method");
        let overwrite = if matches!(precondition, Precondition::IfAbsent) {
            "F"
        } else {
            "T"
        };
        let moved = self
            .request(method, &self.url(staged))
            .header("Destination", self.url(key))
            .header("Overwrite", overwrite)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        match moved {
            Ok(r) if r.status().is_success() => {}
            Ok(r) if r.status() == StatusCode::PRECONDITION_FAILED => {
                return Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{key} changed (the server refused the move: {})", r.status()),
                ))
            }
            // Locked by a writer that is not cloudsync, say.
            Ok(r) if r.status().as_u16() == 423 => {
                return Err(CloudError::new(
                    CloudErrorKind::Throttled,
                    format!("{key} is locked by another client; try again later"),
                ))
            }
            Ok(r) => return Err(status_error(key, r.status())),
            // Sent, maybe done: the check below tells.
            Err(e) if self.stat_file(staged).await.is_ok() => return Err(send_error(key, &e)),
            Err(_) => {}
        }
        // The object must now be the one staged: anything else means it was
        // replaced in that instant, and our bytes are not there.
        let now = self.stat_file(key).await?;
        if now.etag != staged_obj.etag || now.size != staged_obj.size {
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} was replaced right after it was written"),
            ));
        }
        Ok(now)
    }

    async fn delete_raw(&self, key: &str, if_match: Option<&str>) -> Result<StatusCode, CloudError> {
        let url = self.url(key);
        let r = self
            .send(key, || {
                // (The etag is checked under the key's lock: servers differ
                // in how they read an `If` list without a lock token.)
                let _ = if_match;
                self.request(Method::DELETE, &url)
            })
            .await?;
        Ok(r.status())
    }
}

/// The error's words, with every cause (reqwest's own message leaves them out).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A request with the account's credentials, if any.
fn authorized(
    client: &reqwest::Client,
    auth: &Option<(String, String)>,
    method: Method,
    url: &str,
) -> reqwest::RequestBuilder {
    let r = client.request(method, url);
    match auth {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    }
}

fn send_error(what: &str, e: &reqwest::Error) -> CloudError {
    let kind = if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode() {
        CloudErrorKind::Network
    } else {
        CloudErrorKind::Other
    };
    CloudError::new(kind, format!("{what}: {}", chain(e)))
}

fn status_error(what: &str, s: StatusCode) -> CloudError {
    CloudError::new(
        status_kind(s.as_u16()).into(),
        cloudsync_contract::webdav::status_message(what, s),
    )
}

#[async_trait]
impl Cloud for WebDavCloud {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn set_device(&self, id: &str) {
        self.names.set_device(id)
    }

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        check_key(key)?;
        self.stat_file(key).await
    }

    fn list_from(self: Arc<Self>, prefix: &str, _after: Option<&str>) -> Box<dyn ListCursor> {
        Box::new(WebDavListing {
            dav: self,
            walk: DavWalk::new(prefix),
        })
    }

    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        check_key(key)?;
        let object = self.stat_file(key).await?;
        object.expect_etag(if_match)?;
        let url = self.url(key);
        if object.size.saturating_sub(offset) > 2 * RANGE {
            let stream = self.ranged(key, url, offset, object.size);
            return Ok((object, stream));
        }
        let r = self
            .send(key, || {
                let r = self.request(Method::GET, &url);
                if offset > 0 {
                    r.header("Range", format!("bytes={offset}-"))
                } else {
                    r
                }
            })
            .await?;
        match r.status().as_u16() {
            200 if offset == 0 => {}
            206 => {}
            200 => {
                return Err(CloudError::new(
                    CloudErrorKind::Other,
                    format!("{key}: the server does not resume reads (no ranges)"),
                ))
            }
            416 if offset >= object.size => {
                return Ok((object, super::bytes_stream(Vec::new())));
            }
            s => return Err(status_error(key, StatusCode::from_u16(s).expect("a status"))),
        }
        let what = key.to_string();
        let stream = r.bytes_stream().map_err(move |e| {
            // Never `Interrupted`: read loops retry that kind forever.
            let kind = if e.is_timeout() {
                std::io::ErrorKind::TimedOut
            } else {
                std::io::ErrorKind::ConnectionAborted
            };
            std::io::Error::new(kind, format!("reading {what}: {}", chain(&e)))
        });
        Ok((object, Box::pin(StreamReader::new(stream))))
    }

    async fn put(&self, key: &str, data: ByteStream, precondition: Precondition) -> Result<CloudObject, CloudError> {
        check_key(key)?;
        let staged = self.names.next();
        self.make_parents(&staged).await?;
        if let Err(e) = self.put_body(&staged, data).await {
            let _ = self.delete_raw(&staged, None).await;
            return Err(e);
        }
        let result = async {
            let staged_obj = self.stat_file(&staged).await?;
            self.make_parents(key).await?;
            let held = match precondition {
                Precondition::None => None,
                _ => self.lock(key).await?,
            };
            let placed = self.check_and_move(key, &staged, &staged_obj, &precondition).await;
            self.unlock(held).await;
            placed
        }
        .await;
        if result.is_err() {
            let _ = self.delete_raw(&staged, None).await;
        }
        result
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        check_key(key)?;
        let held = match if_match {
            Some(_) => self.lock(key).await?,
            None => None,
        };
        let deleted = async {
            if let Some(etag) = if_match {
                self.stat_file(key).await?.expect_etag(Some(etag))?;
            }
            match self.delete_raw(key, if_match).await? {
                s if s.is_success() => Ok(()),
                s => Err(status_error(key, s)),
            }
        }
        .await;
        self.unlock(held).await;
        deleted
    }

    async fn check_root(&self) -> Result<(), CloudError> {
        match self.propfind("", "0").await? {
            Some(e) if e.first().is_none_or(|e| e.collection) => Ok(()),
            Some(_) => Err(CloudError::new(
                CloudErrorKind::Unauthorized,
                format!("{} is a file on the server, not a folder", self.base),
            )),
            None => Err(CloudError::new(
                CloudErrorKind::Unauthorized,
                format!(
                    "the folder {} does not exist on the server: make it, or check the URL",
                    self.base
                ),
            )),
        }
    }
    async fn sweep_staging(&self, device: &str, older_than: Duration) -> Result<usize, CloudError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut staged = Vec::new();
        let mut walk = DavWalk::new(&format!("{STAGING_DIR}/"));
        loop {
            let page = walk.next_page(self, 1000).await?;
            if page.is_empty() {
                break;
            }
            staged.extend(page.into_iter().filter_map(|l| match l {
                Listed::Object(o) => Some(o),
                Listed::Skipped { .. } => None,
            }));
        }
        let mut removed = 0;
        for o in staged {
            let own = o.key.strip_prefix(&format!("{STAGING_DIR}/{device}/")).is_some();
            let abandoned = o.modified_ms > 0 && now.saturating_sub(o.modified_ms) > older_than.as_millis() as u64;
            if (own || abandoned) && self.delete_raw(&o.key, None).await.is_ok_and(|s| s.is_success()) {
                removed += 1;
            }
        }
        // Lock folders killed writers left, by their markers' age.
        if let Ok(Some(folders)) = self.propfind(LOCKS_DIR, "1").await {
            for f in folders.iter().filter(|f| f.collection) {
                let Some(Ok(lock)) = self.key_of(&f.href) else { continue };
                if lock == LOCKS_DIR {
                    continue;
                }
                let owners = self.lock_owners(&lock).await.unwrap_or_default();
                let old = |since: &u64| now.saturating_sub(*since) > LOCK_SWEEP_AGE.as_millis() as u64;
                if !owners.is_empty() && owners.iter().all(|(_, since)| old(since)) {
                    self.clear_lock(&lock, &format!("{}/", self.url(&lock))).await;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apache_and_rclone_style_answers() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:"><D:href>/dav/app/</D:href><D:propstat><D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/app/a%20b%26c.txt</D:href><D:propstat><D:prop>
<lp1:resourcetype xmlns:lp1="DAV:"/><D:getcontentlength>12</D:getcontentlength>
<D:getetag>W/"c-5f1"</D:getetag><D:getlastmodified>Tue, 01 Dec 2026 10:02:41 GMT</D:getlastmodified>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:quota/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>
<d:response xmlns:d="DAV:"><d:href>http://h/dav/app/x&amp;y</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
</D:multistatus>"#;
        let e = parse_multistatus(xml).unwrap();
        assert_eq!(e.len(), 3);
        assert!(e[0].collection);
        assert_eq!(e[1].href, "/dav/app/a%20b%26c.txt");
        assert_eq!(e[1].size, Some(12));
        assert_eq!(e[1].etag.as_deref(), Some("\"c-5f1\""));
        assert_eq!(e[1].modified_ms, Some(1_796_119_361_000));
        assert_eq!(e[2].href, "http://h/dav/app/x&y");
        let cloud = WebDavCloud::new("http://h/dav", None, "t".into()).unwrap();
        assert_eq!(cloud.key_of(&e[1].href), Some(Ok("app/a b&c.txt".into())));
        assert_eq!(cloud.key_of("/dav/"), None);
        assert_eq!(cloud.key_of("/elsewhere/x"), None);
        assert_eq!(cloud.key_of("/dav/app/caf%E9"), Some(Err("app/caf\u{fffd}".into())));
        assert_eq!(cloud.url("app/a b/#1?.txt"), "http://h/dav/app/a%20b/%231%3F.txt");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// A server's answers, mangled anyhow: read or refused, never a panic.
        #[test]
        fn any_answer_or_href_is_read_or_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cut in 0usize..2000,
            flip in 0usize..2000,
            href in "\\PC{0,40}",
        ) {
            let _ = parse_multistatus(&bytes);
            let _ = parse_lockdiscovery(&bytes);
            let mut good = VALID.as_bytes().to_vec();
            if flip < good.len() {
                good[flip] ^= 0x5a;
            }
            good.truncate(cut.min(good.len()));
            let _ = parse_multistatus(&good);
            let _ = parse_lockdiscovery(&good);
            let cloud = WebDavCloud::new("http://h/dav", None, "t".into()).unwrap();
            for h in [href.clone(), format!("/dav/{href}"), format!("http://h/dav/{href}")] {
                if let Some(Ok(key)) = cloud.key_of(&h) {
                    proptest::prop_assert!(!key.is_empty());
                }
            }
        }
    }

    const VALID: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/a%20b</D:href><D:propstat><D:prop><D:getcontentlength>12</D:getcontentlength><D:getetag>"c-5f1"</D:getetag><D:getlastmodified>Tue, 01 Dec 2026 10:02:41 GMT</D:getlastmodified><D:lockdiscovery><D:activelock><D:owner>me</D:owner><D:locktoken><D:href>opaquelocktoken:x</D:href></D:locktoken></D:activelock></D:lockdiscovery></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;

    #[test]
    fn broken_answers_are_errors_not_panics() {
        for bad in [
            &b"<a><b></a>"[..],
            b"</x>",
            b"<\xff\xfe",
            b"<D:multistatus><D:response><D:href>&bogus;",
        ] {
            let _ = parse_multistatus(bad);
        }
    }
}

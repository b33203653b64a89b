//! The `cloud` interface over a WebDAV server, through wasi:http: the
//! native host's WebDAV protocol (`host/src/cloud/webdav.rs`), spoken the
//! same way (`cloudsync_contract::webdav`), so that native and WASI devices
//! write one cloud without racing.
//!
//! - Listings walk one collection per `PROPFIND` (`Depth: 1`), holding only
//!   the collections being read.
//! - Uploads stream to a staging name under
//!   `.cloudsync/staging/wasi-<device>/` as the engine sends their parts,
//!   then `MOVE` into place; a conditional one holds the key's lock folder
//!   (`MKCOL`, an owner marker, a WebDAV `LOCK`) while it checks the etag
//!   and moves, and checks after the move that its bytes are there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cloudsync_contract::webdav::{
    encode_key, key_of, lock_is_stale, lock_of, lockinfo_body, marker_since, owner_marker, owner_prefix,
    parse_lockdiscovery, parse_multistatus, status_kind, worth_retrying, DavEntry, LOCKDISCOVERY_BODY, PROPFIND_BODY,
};
use cloudsync_contract::{LOCK_STALE, LOCK_WAIT, STAGING_DIR};

use crate::cloud::{Cloud, CloudError, CloudErrorKind, Listed, Object, Precondition};
use crate::http::{Answer, Failure, Sending, Server};

/// Tries of a request that may be sent again.
const TRIES: u32 = 4;

pub struct DavCloud {
    server: Server,
    /// The base URL's path, percent-encoded, ending with `/`.
    base: String,
    /// The same, decoded, as hrefs give it.
    base_path: String,
    /// This device's staging folder (a key).
    staging: String,
    /// `<device>~<run>~`: whose lock markers are this run's.
    me: String,
    device: String,
    seq: u64,
    uploads: BTreeMap<u64, Upload>,
    next_upload: u64,
    /// The listing being paged out: (bundle and prefix, last path, walk).
    listing: Option<(String, String, Walk)>,
    /// Collections known to exist.
    known: BTreeSet<String>,
    /// The server cannot make lock folders: writes go without them.
    no_locks: bool,
}

struct Upload {
    bundle: String,
    path: String,
    precondition: Precondition,
    staged: String,
    sending: Option<Sending>,
}

/// A held lock: its folder, the marker naming this writer, and the WebDAV
/// lock token on the folder (where the server has locking).
struct Held {
    folder: String,
    marker: String,
    token: Option<String>,
}

fn network(what: &str, f: Failure) -> CloudError {
    let what = if what.is_empty() { "the server" } else { what };
    CloudError::new(CloudErrorKind::Network, format!("{what}: {}", f.0))
}

fn status_error(what: &str, status: u16) -> CloudError {
    CloudError::new(
        status_kind(status),
        cloudsync_contract::webdav::status_message(what, status),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A clean key: no empty, `.` or `..` parts.
fn check(key: &str) -> Result<(), CloudError> {
    crate::paths::check(key).map_err(|e| CloudError::new(CloudErrorKind::Other, e.message))
}

impl DavCloud {
    /// The server at `url` (`http(s)://authority/path`), for the device
    /// `device`; what a killed run of this device left staged goes.
    pub fn new(url: &str, authorization: Option<String>, device: &str) -> Result<Self, String> {
        let (https, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => return Err(format!("{url} is not an http(s) URL")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "{url}: no host (credentials go in CLOUDSYNC_WEBDAV_USERNAME/PASSWORD)"
            ));
        }
        let path = path.trim_matches('/');
        let base = if path.is_empty() {
            "/".to_string()
        } else {
            format!("/{path}/")
        };
        let base_path = percent_encoding::percent_decode_str(&base)
            .decode_utf8()
            .map_err(|_| format!("{url}: the path is not UTF-8"))?
            .to_string();
        let run = now_ms().to_string();
        let cloud = DavCloud {
            server: Server {
                https,
                authority: authority.to_string(),
                authorization,
            },
            base,
            base_path,
            staging: format!("{STAGING_DIR}/wasi-{device}"),
            me: owner_prefix(&format!("wasi-{device}"), &run),
            device: format!("wasi-{device}"),
            seq: 0,
            uploads: BTreeMap::new(),
            next_upload: 0,
            listing: None,
            known: BTreeSet::new(),
            no_locks: false,
        };
        // Swept now: no upload of this device runs before this one starts.
        let staging = cloud.staging.clone();
        let _ = cloud.request("DELETE", &format!("{staging}/"), &[], b"");
        Ok(cloud)
    }

    fn url(&self, key: &str) -> String {
        format!("{}{}", self.base, encode_key(key))
    }

    /// One request, no retry.
    fn request(&self, method: &str, key: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Answer, Failure> {
        let path = if key.ends_with('/') {
            format!("{}/", self.url(key.trim_end_matches('/')))
        } else {
            self.url(key)
        };
        self.server.send(method, &path, headers, body)
    }

    /// A request that may be sent again: network failures and server
    /// trouble are retried with backoff.
    fn send(&self, method: &str, key: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Answer, CloudError> {
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 0..TRIES {
            if attempt > 0 {
                std::thread::sleep(delay);
                delay *= 4;
            }
            match self.request(method, key, headers, body) {
                Ok(a) if worth_retrying(a.status) => last = Some(status_error(key, a.status)),
                Ok(a) => return Ok(a),
                Err(f) => last = Some(network(key, f)),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn propfind(&self, key: &str, depth: &str) -> Result<Option<Vec<DavEntry>>, CloudError> {
        let headers = [
            ("depth", depth.to_string()),
            ("content-type", "application/xml; charset=utf-8".to_string()),
        ];
        let collection = if key.is_empty() { String::new() } else { key.to_string() };
        let a = self.send("PROPFIND", &collection, &headers, PROPFIND_BODY.as_bytes())?;
        match a.status {
            404 => Ok(None),
            207 => parse_multistatus(&a.body).map(Some).map_err(|e| {
                CloudError::new(
                    CloudErrorKind::Other,
                    format!("{key}: a listing the server sent is not valid: {e}"),
                )
            }),
            s => Err(status_error(key, s)),
        }
    }

    fn key_of(&self, href: &str) -> Option<Result<String, String>> {
        key_of(&self.base_path, href)
    }

    fn stat_key(&self, key: &str) -> Result<Object, CloudError> {
        let entries = self.propfind(key, "0")?.ok_or_else(|| not_found(key))?;
        match entries.first() {
            Some(e) if !e.collection => Ok(e.object(key)),
            _ => Err(not_found(key)),
        }
    }

    /// Makes the collections above `key`, each once.
    fn make_parents(&mut self, key: &str) -> Result<(), CloudError> {
        let parts: Vec<&str> = key.split('/').collect();
        let mut dir = String::new();
        for part in &parts[..parts.len() - 1] {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(part);
            if self.known.contains(&dir) {
                continue;
            }
            let a = self.send("MKCOL", &format!("{dir}/"), &[], b"")?;
            match a.status {
                201 => {}
                409 => return Err(file_in_the_way(key, &dir)),
                // There already, or made by another client meanwhile: it
                // must be a collection now.
                s => match self.propfind(&dir, "0")? {
                    Some(e) if e.first().is_some_and(|e| e.collection) => {}
                    Some(_) => return Err(file_in_the_way(key, &dir)),
                    None => return Err(status_error(&dir, s)),
                },
            }
            self.known.insert(dir.clone());
        }
        Ok(())
    }

    /// Takes `key`'s lock, waiting while another writer holds it (the
    /// native host's protocol, step for step). `None` when the server
    /// cannot make folders there.
    fn lock(&mut self, key: &str) -> Result<Option<Held>, CloudError> {
        if self.no_locks {
            return Ok(None);
        }
        let lock = lock_of(key);
        self.make_parents(&lock)?;
        let folder = format!("{lock}/");
        let deadline = now_ms() + LOCK_WAIT.as_millis() as u64;
        let mut delay = Duration::from_millis(20);
        let wait = |delay: &mut Duration| {
            std::thread::sleep(*delay);
            *delay = (*delay * 2).min(Duration::from_millis(500));
        };
        loop {
            if now_ms() >= deadline {
                return Err(CloudError::new(
                    CloudErrorKind::Throttled,
                    format!("{key}: another writer holds it; try again later"),
                ));
            }
            let status = match self.request("MKCOL", &folder, &[], b"") {
                Ok(a) => a.status,
                // The answer was lost: made by us if nobody claims it soon.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(300));
                    match self.lock_owners(&lock) {
                        Some(owners) if owners.is_empty() => 201,
                        _ => 405,
                    }
                }
            };
            match status {
                201 => {}
                405 | 403 | 409 | 423 => {
                    let owners = self.lock_owners(&lock).unwrap_or_default();
                    if lock_is_stale(&owners, &self.device, &self.me, now_ms()) {
                        self.clear_lock(&folder);
                    } else {
                        wait(&mut delay);
                    }
                    continue;
                }
                501 => {
                    self.no_locks = true;
                    return Ok(None);
                }
                s if s == 429 || s >= 500 => {
                    wait(&mut delay);
                    continue;
                }
                s => return Err(status_error(key, s)),
            }
            self.seq += 1;
            let owner = owner_marker(&self.me, now_ms(), self.seq);
            let marker = format!("{lock}/{owner}");
            self.send("PUT", &marker, &[], b"")?;
            match self.lock_folder(&folder, &owner) {
                Some(Ok(token)) => return Ok(Some(Held { folder, marker, token })),
                // Another writer was granted the folder too, and holds its
                // lock: ours goes, and we wait for it.
                Some(Err(())) => {
                    let _ = self.request("DELETE", &marker, &[], b"");
                    wait(&mut delay);
                }
                // No WebDAV locking: the folder alone is the lock.
                None => {
                    return Ok(Some(Held {
                        folder,
                        marker,
                        token: None,
                    }))
                }
            }
        }
    }

    /// An exclusive `LOCK` on the lock folder, as `owner`: its token, `Err`
    /// when another holds it, `None` when the server has no locking.
    fn lock_folder(&self, folder: &str, owner: &str) -> Option<Result<Option<String>, ()>> {
        let headers = [
            ("depth", "0".to_string()),
            ("timeout", format!("Second-{}", LOCK_STALE.as_secs())),
            ("content-type", "application/xml; charset=utf-8".to_string()),
        ];
        let body = lockinfo_body(owner);
        let mine = || {
            self.lock_holders(folder)
                .into_iter()
                .find(|(o, _)| o == owner)
                .map(|(_, token)| token)
        };
        for _ in 0..TRIES {
            match self.request("LOCK", folder, &headers, body.as_bytes()) {
                Ok(a) if (200..300).contains(&a.status) => return Some(Ok(a.header("lock-token").map(str::to_string))),
                // Ours all the same if an earlier attempt's answer was lost.
                Ok(a) if a.status == 423 => return Some(mine().map(Some).ok_or(())),
                Ok(a) if matches!(a.status, 400 | 405 | 412 | 501) => return None,
                Ok(_) | Err(_) => {
                    if let Some(token) = mine() {
                        return Some(Ok(Some(token)));
                    }
                }
            }
        }
        Some(Err(()))
    }

    /// Who holds WebDAV locks on `folder` now, and their tokens.
    fn lock_holders(&self, folder: &str) -> Vec<(String, String)> {
        let headers = [
            ("depth", "0".to_string()),
            ("content-type", "application/xml; charset=utf-8".to_string()),
        ];
        match self.request("PROPFIND", folder, &headers, LOCKDISCOVERY_BODY.as_bytes()) {
            Ok(a) => parse_lockdiscovery(&a.body),
            Err(_) => Vec::new(),
        }
    }

    /// The markers in a lock folder: (owner, since ms). `None` when it
    /// cannot be listed; a folder without a marker yet counts as held since
    /// it was made.
    fn lock_owners(&self, lock: &str) -> Option<Vec<(String, u64)>> {
        let entries = self.propfind(lock, "1").ok()??;
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
            if let Some(made) = made.filter(|m| now_ms().saturating_sub(*m) > LOCK_STALE.as_millis() as u64) {
                owners.push((String::new(), made));
            }
        }
        Some(owners)
    }

    /// Clears a lock a killed writer left: its WebDAV lock, then the folder.
    fn clear_lock(&self, folder: &str) {
        for (_, token) in self.lock_holders(folder) {
            let _ = self.request("UNLOCK", folder, &[("lock-token", token)], b"");
        }
        let _ = self.request("DELETE", folder, &[], b"");
    }

    /// Releases a lock: its WebDAV lock, then its folder, marker and all.
    fn unlock(&self, held: Option<Held>) {
        let Some(held) = held else { return };
        if let Some(token) = &held.token {
            let _ = self.request("UNLOCK", &held.folder, &[("lock-token", token.clone())], b"");
        }
        for _ in 0..2 {
            // Tried twice: a lock left behind only goes stale.
            match self.request("DELETE", &held.folder, &[], b"").map(|a| a.status) {
                Ok(s) if (200..300).contains(&s) => return,
                // A `LOCK` that met no folder made an empty file at its name
                // on some servers (RFC 4918's lock-null); it goes too.
                Ok(404) => {
                    let _ = self.request("DELETE", held.folder.trim_end_matches('/'), &[], b"");
                    return;
                }
                _ => {}
            }
        }
        let _ = self.request("DELETE", &held.marker, &[], b"");
    }

    /// Under the key's lock: checks the condition and moves the staged
    /// object into place; then it must be there as staged.
    fn check_and_move(
        &self,
        key: &str,
        staged: &str,
        staged_obj: &Object,
        precondition: &Precondition,
    ) -> Result<Object, CloudError> {
        // A collection at the name is never moved over (`Overwrite: T`
        // would delete it).
        let current = match self.propfind(key, "0")? {
            None => None,
            Some(entries) => match entries.first() {
                Some(e) if !e.collection => Some(e.object(key)),
                _ => {
                    return Err(CloudError::new(
                        CloudErrorKind::Other,
                        format!("{key}: a folder is where the file must be; it was left alone"),
                    ))
                }
            },
        };
        match (precondition, &current) {
            (Precondition::IfMatch(want), Some(o)) if o.etag == *want => {}
            (Precondition::IfMatch(want), _) => {
                return Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{key} changed: it is not {want}"),
                ))
            }
            (Precondition::IfAbsent, Some(_)) => {
                return Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{key} already exists"),
                ))
            }
            _ => {}
        }
        let overwrite = if matches!(precondition, Precondition::IfAbsent) {
            "F"
        } else {
            "T"
        };
        let destination = format!(
            "{}://{}{}",
            if self.server.https { "https" } else { "http" },
            self.server.authority,
            self.url(key)
        );
        let headers = [("destination", destination), ("overwrite", overwrite.to_string())];
        match self.request("MOVE", staged, &headers, b"") {
            Ok(a) if (200..300).contains(&a.status) => {}
            Ok(a) if a.status == 412 => {
                return Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{key} changed (the server refused the move: {})", a.status),
                ))
            }
            // Locked by a writer that is not cloudsync, say.
            Ok(a) if a.status == 423 => {
                return Err(CloudError::new(
                    CloudErrorKind::Throttled,
                    format!("{key} is locked by another client; try again later"),
                ))
            }
            Ok(a) => return Err(status_error(key, a.status)),
            // Sent, maybe done: the check below tells.
            Err(f) if self.stat_key(staged).is_ok() => return Err(network(key, f)),
            Err(_) => {}
        }
        // The object must now be the one staged: anything else means it was
        // replaced in that instant, and our bytes are not there.
        let now = self.stat_key(key)?;
        if now.etag != staged_obj.etag || now.size != staged_obj.size {
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} was replaced right after it was written"),
            ));
        }
        Ok(now)
    }

    fn place(&mut self, u: &Upload, staged_obj: &Object) -> Result<Object, CloudError> {
        let key = format!("{}/{}", u.bundle, u.path);
        self.make_parents(&key)?;
        let held = match u.precondition {
            Precondition::None => None,
            _ => self.lock(&key)?,
        };
        let placed = self.check_and_move(&key, &u.staged, staged_obj, &u.precondition);
        self.unlock(held);
        placed
    }

    /// An object of `bundle` as the engine names it: its path in the bundle.
    fn in_bundle(bundle: &str, mut o: Object) -> Object {
        o.path = o
            .path
            .strip_prefix(&format!("{bundle}/"))
            .unwrap_or(&o.path)
            .to_string();
        o
    }

    fn key(bundle: &str, path: &str) -> Result<String, CloudError> {
        if path.is_empty() {
            return Err(CloudError::new(CloudErrorKind::Other, "an object needs a path"));
        }
        check(path)?;
        Ok(format!("{bundle}/{path}"))
    }
}

fn not_found(key: &str) -> CloudError {
    CloudError::new(CloudErrorKind::NotFound, format!("{key}: no such object"))
}

fn file_in_the_way(key: &str, dir: &str) -> CloudError {
    CloudError::new(
        CloudErrorKind::Other,
        format!("{key}: a file is where a folder must be ({dir})"),
    )
}

impl Cloud for DavCloud {
    fn ready(&mut self) -> Result<(), CloudError> {
        let unauthorized = |why: String| CloudError::new(CloudErrorKind::Unauthorized, why);
        match self.propfind("", "0") {
            Ok(Some(e)) if e.first().is_none_or(|e| e.collection) => Ok(()),
            Ok(Some(_)) => Err(unauthorized(format!(
                "{} is a file on the server, not a folder",
                self.base
            ))),
            Ok(None) => Err(unauthorized(format!(
                "the folder {} does not exist on the server: make it, or check the URL",
                self.base
            ))),
            Err(e) => Err(e),
        }
    }

    fn stat(&mut self, bundle: &str, path: &str) -> Result<Object, CloudError> {
        let key = Self::key(bundle, path)?;
        self.stat_key(&key).map(|o| Self::in_bundle(bundle, o))
    }

    fn read(
        &mut self,
        bundle: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, CloudError> {
        let key = Self::key(bundle, path)?;
        let object = self.stat_key(&key)?;
        if if_match.is_some_and(|e| e != object.etag) {
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{path} is not the version asked for"),
            ));
        }
        let len = u64::from(len).min(crate::area::IO_MAX as u64);
        if len == 0 || offset >= object.size {
            return Ok(Vec::new());
        }
        let last = (offset + len).min(object.size) - 1;
        let a = self.send("GET", &key, &[("range", format!("bytes={offset}-{last}"))], b"")?;
        let mut body = match a.status {
            206 => a.body,
            // The whole object, from a server that ignores ranges.
            200 => a.body.get(offset as usize..).map(<[u8]>::to_vec).unwrap_or_default(),
            s => return Err(status_error(&key, s)),
        };
        body.truncate((last + 1 - offset) as usize);
        if body.len() as u64 != last + 1 - offset {
            return Err(CloudError::new(
                CloudErrorKind::Network,
                format!("{path}: {} bytes came for {}", body.len(), last + 1 - offset),
            ));
        }
        Ok(body)
    }

    fn delete(&mut self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        let key = Self::key(bundle, path)?;
        let held = match if_match {
            Some(_) => self.lock(&key)?,
            None => None,
        };
        let deleted = (|| {
            if let Some(etag) = if_match {
                match self.stat_key(&key) {
                    Ok(o) if o.etag == etag => {}
                    Ok(_) => {
                        return Err(CloudError::new(
                            CloudErrorKind::PreconditionFailed,
                            format!("{path} changed"),
                        ))
                    }
                    Err(e) if e.kind == CloudErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            match self.send("DELETE", &key, &[], b"")?.status {
                s if (200..300).contains(&s) || s == 404 => Ok(()),
                s => Err(status_error(&key, s)),
            }
        })();
        self.unlock(held);
        deleted
    }

    fn list_page(
        &mut self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(Vec<Listed>, Option<String>), CloudError> {
        let id = format!("{bundle}\n{prefix}");
        let mut walk = match self.listing.take() {
            Some((k, last, walk)) if k == id && Some(last.as_str()) == after => walk,
            _ => {
                let parts = prefix.strip_suffix('/').unwrap_or(prefix);
                check(parts)?;
                Walk::new(&format!("{bundle}/{prefix}"), after.map(|a| format!("{bundle}/{a}")))
            }
        };
        let max = (max as usize).clamp(1, 65_536);
        let page = walk.next_page(self, max)?;
        let page: Vec<Listed> = page
            .into_iter()
            .map(|l| match l {
                Listed::Object(o) => Listed::Object(Self::in_bundle(bundle, o)),
                Listed::Skipped { path, reason } => Listed::Skipped {
                    path: path.strip_prefix(&format!("{bundle}/")).unwrap_or(&path).to_string(),
                    reason,
                },
            })
            .collect();
        if page.len() < max {
            return Ok((page, None));
        }
        let last = page.last().map(|l| l.path().to_string()).expect("a full page");
        self.listing = Some((id, last.clone(), walk));
        Ok((page, Some(last)))
    }

    fn begin_upload(&mut self, bundle: &str, path: &str, precondition: Precondition) -> Result<u64, CloudError> {
        Self::key(bundle, path)?;
        self.next_upload += 1;
        let staged = format!("{}/{}-{}", self.staging, now_ms(), self.next_upload);
        self.make_parents(&staged)?;
        let url = self.url(&staged);
        let sending = self
            .server
            .start("PUT", &url, &[], None)
            .map_err(|f| network(path, f))?;
        self.uploads.insert(
            self.next_upload,
            Upload {
                bundle: bundle.to_string(),
                path: path.to_string(),
                precondition,
                staged,
                sending: Some(sending),
            },
        );
        Ok(self.next_upload)
    }

    fn upload_part(&mut self, id: u64, data: &[u8]) -> Result<(), CloudError> {
        let upload = self
            .uploads
            .get_mut(&id)
            .ok_or_else(|| CloudError::new(CloudErrorKind::Other, format!("no upload {id}")))?;
        let sent = upload.sending.as_mut().expect("sending until finished").write(data);
        if let Err(f) = sent {
            let path = upload.path.clone();
            self.abort_upload(id);
            return Err(network(&path, f));
        }
        Ok(())
    }

    fn abort_upload(&mut self, id: u64) {
        if let Some(mut u) = self.uploads.remove(&id) {
            // Dropped unfinished: the request is cancelled.
            drop(u.sending.take());
            let _ = self.request("DELETE", &u.staged, &[], b"");
        }
    }

    fn finish_upload(&mut self, id: u64) -> Result<Object, CloudError> {
        let mut u = self
            .uploads
            .remove(&id)
            .ok_or_else(|| CloudError::new(CloudErrorKind::Other, format!("no upload {id}")))?;
        let sent = u.sending.take().expect("sending until finished").finish();
        let result = match sent {
            Ok(a) if (200..300).contains(&a.status) => self
                .stat_key(&u.staged)
                .and_then(|staged| self.place(&u, &staged))
                .map(|o| Self::in_bundle(&u.bundle, o)),
            Ok(a) => Err(status_error(&u.path, a.status)),
            Err(f) => Err(network(&u.path, f)),
        };
        if result.is_err() {
            let _ = self.request("DELETE", &u.staged, &[], b"");
        }
        result
    }
}

/// A listing, one collection per `PROPFIND`, in byte order of the keys (a
/// collection's contents come where its name followed by `/` sorts).
struct Walk {
    prefix: String,
    after: Option<String>,
    started: bool,
    /// The collections being read, innermost last, each with its names
    /// still to give, in key order.
    stack: Vec<std::vec::IntoIter<Item>>,
}

enum Item {
    Collection(String),
    Name(Listed),
}

impl Walk {
    fn new(prefix: &str, after: Option<String>) -> Self {
        Walk {
            prefix: prefix.to_string(),
            after,
            started: false,
            stack: Vec::new(),
        }
    }

    fn next_page(&mut self, dav: &mut DavCloud, max: usize) -> Result<Vec<Listed>, CloudError> {
        if !self.started {
            self.started = true;
            let start = self.prefix.rfind('/').map_or("", |i| &self.prefix[..i]).to_string();
            self.enter(dav, &start)?;
        }
        let mut page = Vec::new();
        while page.len() < max {
            let Some(top) = self.stack.last_mut() else { break };
            match top.next() {
                None => {
                    self.stack.pop();
                }
                Some(Item::Collection(key)) => self.enter(dav, &key)?,
                Some(Item::Name(listed)) => page.push(listed),
            }
        }
        Ok(page)
    }

    /// Reads the collection `dir` and puts its names on top.
    fn enter(&mut self, dav: &mut DavCloud, dir: &str) -> Result<(), CloudError> {
        let Some(entries) = dav.propfind(dir, "1")? else {
            return Ok(()); // a collection that is not there holds nothing
        };
        dav.known.insert(dir.to_string());
        let prefix = &self.prefix;
        let past = |key: &str| self.after.as_deref().is_none_or(|a| key > a);
        let mut items = Vec::new();
        for e in entries {
            let key = match dav.key_of(&e.href) {
                None => continue,
                Some(Ok(k)) => k,
                Some(Err(lossy)) => {
                    if lossy.starts_with(prefix.as_str()) && past(&lossy) {
                        let reason = "the name is not valid UTF-8".to_string();
                        items.push((lossy.clone(), Item::Name(Listed::Skipped { path: lossy, reason })));
                    }
                    continue;
                }
            };
            // Only what lies directly in this collection (some servers say more).
            if key == dir || key.rsplit_once('/').map_or("", |(p, _)| p) != dir {
                continue;
            }
            if e.collection {
                let inside = format!("{key}/");
                let wanted = key.starts_with(prefix.as_str()) || prefix.starts_with(&inside);
                // A folder wholly before `after` holds nothing to give.
                let after_it = self
                    .after
                    .as_deref()
                    .is_some_and(|a| a >= inside.as_str() && !a.starts_with(&inside));
                if wanted && !after_it {
                    items.push((inside, Item::Collection(key)));
                }
            } else if key.starts_with(prefix.as_str()) && past(&key) {
                let listed = match check(&key) {
                    Ok(()) => Listed::Object(e.object(&key)),
                    Err(_) => Listed::Skipped {
                        path: key.clone(),
                        reason: "not a usable file name".into(),
                    },
                };
                items.push((key, Item::Name(listed)));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|a, b| a.0 == b.0);
        self.stack
            .push(items.into_iter().map(|(_, item)| item).collect::<Vec<_>>().into_iter());
        Ok(())
    }
}

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::engine::FileKind;

/// A local file: (content, mtime, ctime).
type LocalFile = (Vec<u8>, u64, u64);

/// What runs before a cloud read.
type Hook = Option<Box<dyn FnMut(&Ports)>>;

/// Local files and a cloud in memory; a file's stamp moves on every write.
#[derive(Default)]
struct Ports {
    files: RefCell<BTreeMap<String, LocalFile>>,
    cloud: RefCell<BTreeMap<String, (Vec<u8>, u64)>>,
    uploads: RefCell<BTreeMap<u64, (String, Vec<u8>)>>,
    /// Called before every cloud read: lets a test change the cloud mid-way.
    on_read: RefCell<Hook>,
    version: std::cell::Cell<u64>,
}

impl Ports {
    fn tick(&self) -> u64 {
        self.version.set(self.version.get() + 1);
        self.version.get()
    }
    fn put_local(&self, path: &str, data: &[u8]) {
        let v = self.tick();
        self.files.borrow_mut().insert(path.into(), (data.to_vec(), v, v));
    }
    fn put_cloud(&self, path: &str, data: &[u8]) {
        let v = self.tick();
        self.cloud.borrow_mut().insert(path.into(), (data.to_vec(), v));
    }
    fn local(&self, path: &str) -> Option<Vec<u8>> {
        self.files.borrow().get(path).map(|f| f.0.clone())
    }
}

fn object(path: &str, data: &[u8], v: u64) -> CloudObject {
    CloudObject {
        path: path.into(),
        size: data.len() as u64,
        etag: format!("v{v}"),
        version: None,
        content_hash: None,
        modified_ms: 0,
    }
}

impl CorePorts for Ports {
    fn stat(&self, _: &str, path: &str) -> Result<Option<FileStat>, IoError> {
        Ok(self.files.borrow().get(path).map(|(data, m, c)| FileStat {
            kind: FileKind::File,
            size: data.len() as u64,
            mtime_ns: *m,
            ctime_ns: *c,
            inode: 1,
            atime_ns: 0,
        }))
    }
    fn read_file(&self, _: &str, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, IoError> {
        let files = self.files.borrow();
        let (data, _, _) = files.get(path).ok_or(IoError::new(IoErrorKind::NotFound, path))?;
        let from = (offset as usize).min(data.len());
        Ok(data[from..(from + len as usize).min(data.len())].to_vec())
    }
    fn write_file(&self, _: &str, path: &str, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let v = self.tick();
        let mut files = self.files.borrow_mut();
        let file = files.entry(path.into()).or_default();
        assert!(offset as usize <= file.0.len(), "a write past the end");
        file.0.truncate(offset as usize);
        file.0.extend_from_slice(data);
        file.1 = v;
        file.2 = v;
        Ok(())
    }
    fn move_file(&self, _: &str, from: &str, to: &str, mode: MoveMode, _: bool) -> Result<(), IoError> {
        let mut files = self.files.borrow_mut();
        if mode == MoveMode::NoReplace && files.contains_key(to) {
            return Err(IoError::new(IoErrorKind::AlreadyExists, to));
        }
        let mut f = files.remove(from).ok_or(IoError::new(IoErrorKind::NotFound, from))?;
        // A rename moves the ctime, as Linux's does.
        f.2 = self.tick();
        files.insert(to.into(), f);
        Ok(())
    }
    fn remove_file(&self, _: &str, path: &str) -> Result<(), IoError> {
        self.files.borrow_mut().remove(path);
        Ok(())
    }
    fn flush(&self, _: &str) -> Result<(), IoError> {
        Ok(())
    }
    fn cloud_stat(&self, _: &str, path: &str) -> Result<CloudObject, CloudError> {
        let cloud = self.cloud.borrow();
        let (data, v) = cloud.get(path).ok_or(CloudError::new(CloudErrorKind::NotFound, path))?;
        Ok(object(path, data, *v))
    }
    fn cloud_read(
        &self,
        _: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, CloudError> {
        if let Some(mut f) = self.on_read.borrow_mut().take() {
            f(self);
        }
        let cloud = self.cloud.borrow();
        let (data, v) = cloud.get(path).ok_or(CloudError::new(CloudErrorKind::NotFound, path))?;
        if if_match.is_some_and(|e| e != format!("v{v}")) {
            return Err(CloudError::new(CloudErrorKind::PreconditionFailed, path));
        }
        let from = (offset as usize).min(data.len());
        Ok(data[from..(from + len as usize).min(data.len())].to_vec())
    }
    fn begin_upload(&self, _: &str, path: &str, precondition: &WritePrecondition) -> Result<u64, CloudError> {
        if *precondition == WritePrecondition::IfAbsent && self.cloud.borrow().contains_key(path) {
            return Err(CloudError::new(CloudErrorKind::PreconditionFailed, path));
        }
        let id = self.tick();
        self.uploads.borrow_mut().insert(id, (path.into(), Vec::new()));
        Ok(id)
    }
    fn upload_part(&self, id: u64, data: &[u8]) -> Result<(), CloudError> {
        self.uploads
            .borrow_mut()
            .get_mut(&id)
            .unwrap()
            .1
            .extend_from_slice(data);
        Ok(())
    }
    fn finish_upload(&self, id: u64) -> Result<CloudObject, CloudError> {
        let (path, data) = self.uploads.borrow_mut().remove(&id).unwrap();
        self.put_cloud(&path, &data);
        self.cloud_stat("", &path)
    }
    fn abort_upload(&self, id: u64) {
        self.uploads.borrow_mut().remove(&id);
    }
}

fn download(path: &str, offset: u64) -> DownloadRequest {
    DownloadRequest {
        bundle: "app".into(),
        cloud_path: path.into(),
        local_path: format!("staging/{path}"),
        offset,
        if_match: None,
        counted: false,
        durable: true,
    }
}

fn run(t: &Transfers, ports: &Ports, id: TransferId) -> TransferStatus {
    for _ in 0..1000 {
        let status = t.poll(ports, id).expect("known");
        if status.state != TransferState::Running {
            return status;
        }
    }
    panic!("the transfer never ended");
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[test]
fn a_download_moves_every_byte_and_hashes_them() {
    let ports = Ports::default();
    let content = data(5 * STEP as usize + 17);
    ports.put_cloud("a", &content);
    let t = Transfers::default();
    let id = t.start_download(download("a", 0));
    assert!(t.busy());
    let status = run(&t, &ports, id);
    assert_eq!(status.state, TransferState::Done);
    assert_eq!(status.bytes, content.len() as u64);
    assert_eq!(status.sha256, Some(sha(&content)));
    assert_eq!(ports.local("staging/a"), Some(content));
    assert!(!t.busy());
}

#[test]
fn a_resumed_download_hashes_the_kept_bytes_and_an_empty_object_makes_an_empty_file() {
    let ports = Ports::default();
    let content = data(3 * STEP as usize);
    ports.put_cloud("a", &content);
    ports.put_local("staging/a", &content[..STEP as usize + 5]);
    let t = Transfers::default();
    let id = t.start_download(download("a", STEP as u64 + 5));
    let status = run(&t, &ports, id);
    assert_eq!(status.sha256, Some(sha(&content)));
    assert_eq!(ports.local("staging/a"), Some(content));

    ports.put_cloud("empty", b"");
    let id = t.start_download(download("empty", 0));
    assert_eq!(run(&t, &ports, id).state, TransferState::Done);
    assert_eq!(ports.local("staging/empty"), Some(Vec::new()));
}

#[test]
fn an_object_replaced_mid_download_fails_it() {
    let ports = Ports::default();
    ports.put_cloud("a", &data(3 * STEP as usize));
    *ports.on_read.borrow_mut() = Some(Box::new(|p: &Ports| p.put_cloud("a", b"new")));
    let t = Transfers::default();
    let id = t.start_download(download("a", 0));
    match run(&t, &ports, id).state {
        TransferState::Failed(e) => assert_eq!(e.kind, CloudErrorKind::PreconditionFailed),
        other => panic!("{other:?}"),
    }
    let mut stale = download("a", 0);
    stale.if_match = Some("v0".into());
    let id = t.start_download(stale);
    assert!(matches!(run(&t, &ports, id).state, TransferState::Failed(_)));
}

fn upload(ports: &Ports, path: &str) -> UploadRequest {
    let st = ports.stat("", path).unwrap().unwrap();
    UploadRequest {
        bundle: "app".into(),
        local_path: path.into(),
        cloud_path: path.into(),
        precondition: WritePrecondition::IfAbsent,
        expect: Some(st.into()),
    }
}

#[test]
fn an_upload_sends_the_file_whole_or_nothing() {
    let ports = Ports::default();
    let content = data(2 * STEP as usize + 3);
    ports.put_local("f", &content);
    let t = Transfers::default();
    let id = t.start_upload(upload(&ports, "f"));
    let status = run(&t, &ports, id);
    assert_eq!(status.state, TransferState::Done);
    let uploaded = status.uploaded.expect("the object");
    assert_eq!(uploaded.content_hash, Some(format!("sha256:{}", sha(&content))));
    assert_eq!(ports.cloud.borrow()["f"].0, content);

    // Changed after the engine looked: refused, nothing reaches the cloud.
    ports.put_local("g", b"one");
    let request = upload(&ports, "g");
    ports.put_local("g", b"two");
    let id = t.start_upload(request);
    assert!(
        matches!(run(&t, &ports, id).state, TransferState::Failed(e) if e.kind == CloudErrorKind::PreconditionFailed)
    );
    assert!(!ports.cloud.borrow().contains_key("g"));

    // Changed between two steps: aborted.
    ports.put_local("h", &data(9 * STEP as usize));
    let id = t.start_upload(upload(&ports, "h"));
    assert_eq!(t.poll(&ports, id).unwrap().state, TransferState::Running);
    ports.put_local("h", &data(9 * STEP as usize));
    assert!(matches!(run(&t, &ports, id).state, TransferState::Failed(_)));
    assert!(!ports.cloud.borrow().contains_key("h"));
    assert!(ports.uploads.borrow().is_empty(), "the cloud's upload was dropped");
}

#[test]
fn a_cancelled_upload_leaves_nothing() {
    let ports = Ports::default();
    ports.put_local("h", &data(9 * STEP as usize));
    let t = Transfers::default();
    let id = t.start_upload(upload(&ports, "h"));
    t.poll(&ports, id);
    t.release(&ports, id);
    assert!(t.poll(&ports, id).is_none());
    assert!(ports.uploads.borrow().is_empty());
    assert!(!ports.cloud.borrow().contains_key("h"));
}

#[test]
fn hashing_and_evicting_by_itself() {
    let ports = Ports::default();
    let content = data(STEP as usize * 2);
    ports.put_local("f", &content);
    assert_eq!(hash_file(&ports, "app", "f").unwrap(), sha(&content));

    let stamp: LocalStamp = ports.stat("", "f").unwrap().unwrap().into();
    ports.put_local("g", b"x");
    let old: LocalStamp = ports.stat("", "g").unwrap().unwrap().into();
    ports.put_local("g", b"y");
    assert!(
        evict(&ports, "app", "g", old, "aside").is_err(),
        "a changed file is kept"
    );
    assert_eq!(ports.local("g"), Some(b"y".to_vec()));
    evict(&ports, "app", "f", stamp, "aside").unwrap();
    assert_eq!(ports.local("f"), None);
    assert_eq!(ports.local("aside"), None);
}

//! A WebDAV upload larger than any buffer (the engine once gathered WebDAV
//! bodies in memory and refused more than 256 MiB): 320 MiB go up streamed,
//! on Apache and on rclone's server, while this process's peak memory
//! grows by far less than the file. (Its own binary, so that the peak is
//! this test's alone.)

use std::pin::Pin;
use std::task::{Context, Poll};

use cloudsync::cloud::Precondition;
use cloudsync_tests::{Backend, Harness, APP};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// `len` pattern bytes, made as they are read.
struct Pattern {
    left: u64,
    x: u64,
    hash: Sha256,
}

impl AsyncRead for Pattern {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(1 << 16) as usize;
        let mut chunk = vec![0u8; n];
        for word in chunk.chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            word.copy_from_slice(&self.x.to_le_bytes()[..word.len()]);
        }
        self.hash.update(&chunk);
        buf.put_slice(&chunk);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webdav_upload_of_320_mib_is_streamed_with_bounded_memory() {
    const LEN: u64 = 320 << 20;
    for backend in [Backend::WebDav, Backend::RcloneDav] {
        let h = Harness::on(backend).await;
        let before = peak_rss_kib();
        let (tx, rx) = std::sync::mpsc::channel();
        struct Tee(Pattern, std::sync::mpsc::Sender<String>);
        impl AsyncRead for Tee {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                let r = Pin::new(&mut self.0).poll_read(cx, buf);
                if self.0.left == 0 {
                    let _ = self.1.send(format!("{:x}", self.0.hash.clone().finalize()));
                }
                r
            }
        }
        let source = Tee(
            Pattern {
                left: LEN,
                x: 0x2545_f491_4f6c_dd1d,
                hash: Sha256::new(),
            },
            tx,
        );
        let key = format!("{APP}/video.bin");
        let o = h.raw.put(&key, Box::pin(source), Precondition::IfAbsent).await.unwrap();
        assert_eq!(o.size, LEN, "{backend:?}");
        let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
        assert!(
            grown_mib < 96,
            "{backend:?}: the upload grew this process by {grown_mib} MiB"
        );
        let sent = rx.recv().unwrap();
        let on_disk = {
            let mut f = std::fs::File::open(h.cloud_file("video.bin")).unwrap();
            let mut hash = Sha256::new();
            std::io::copy(&mut f, &mut hash).unwrap();
            format!("{:x}", hash.finalize())
        };
        assert_eq!(on_disk, sent, "{backend:?}: the bytes are the ones sent");
        assert!(h.raw.stat(&key).await.is_ok());
    }
}

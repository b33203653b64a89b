//! Reading the small text files people hand the command line (config and
//! policy): only a regular file, and only so much of it. A FIFO would hang
//! the read and `/dev/zero` would fill memory.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// More than this is no settings file.
pub const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// The text of the settings file `path`.
pub fn read_settings(path: &Path) -> std::io::Result<String> {
    // Non-blocking open: a FIFO opens at once (and is refused below) rather
    // than waiting for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_SETTINGS_BYTES {
        return Err(too_big());
    }
    let mut text = String::new();
    file.take(MAX_SETTINGS_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(too_big());
    }
    Ok(text)
}

fn too_big() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("larger than {} KiB: not a settings file", MAX_SETTINGS_BYTES >> 10),
    )
}

/// A settings file's parse error, said by its line and what is wrong, never
/// by the text there: that may be a secret (a key with its quote missing),
/// or the whole file, when it is none (`/proc/self/environ`).
pub fn settings_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().lines().next().unwrap_or("not valid TOML");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_repeat_the_text() {
        let text = "region = \"eu\"\nsecret_access_key = \"wJalrXUtnFEMI\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let said = settings_error(text, &e);
        assert!(said.starts_with("line 2: "), "{said}");
        assert!(!said.contains("wJalrXUtnFEMI"), "{said}");
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "root = \"/x\"\n").unwrap();
        assert_eq!(read_settings(&ok).unwrap(), "root = \"/x\"\n");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_SETTINGS_BYTES + 1) as usize]).unwrap();
        assert!(read_settings(&big)
            .unwrap_err()
            .to_string()
            .contains("not a settings file"));
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(read_settings(&fifo).unwrap_err().to_string().contains("regular"));
        assert!(read_settings(dir.path()).is_err(), "a folder");
        assert!(read_settings(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string()
            .contains("regular"));
    }
}

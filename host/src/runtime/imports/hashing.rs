use std::io::Read;

use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use crate::runtime::bindings::ohos::cloudsync::{hashing, types};
use crate::runtime::state::{io_error, path_error, std_io_error, AreaGrant, HostState};

impl hashing::Host for HostState {
    fn hash_file(
        &mut self,
        area: Resource<AreaGrant>,
        path: String,
        algorithm: String,
    ) -> Result<String, types::IoError> {
        self.in_area(&area, |s, bundle| {
            if algorithm != "sha256" {
                return Err(io_error(
                    types::IoErrorKind::NotSupported,
                    format!("no hash {algorithm:?}; use sha256"),
                ));
            }
            let area = s
                .area_for(&bundle, &[&path], false)?
                .ok_or_else(|| io_error(types::IoErrorKind::NotFound, format!("{path}: no such file")))?;
            let mut file = area.open_read(&path).map_err(path_error)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(|e| std_io_error(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(format!("{:x}", hasher.finalize()))
        })
    }
}

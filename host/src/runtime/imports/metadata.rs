use crate::runtime::bindings::ohos::cloudsync::{metadata, types};
use crate::runtime::state::{meta_error, HostState};

impl metadata::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, types::IoError> {
        self.timed(|s| {
            s.grant_key(&key)?;
            s.b.meta.get(&key).map_err(meta_error)
        })
    }

    fn scan_page(
        &mut self,
        prefix: String,
        after: Option<String>,
        max: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, types::IoError> {
        self.timed(|s| {
            s.grant_key(&prefix)?;
            let max = (max as usize).clamp(1, 65_536);
            s.b.meta.scan_page(&prefix, after.as_deref(), max).map_err(meta_error)
        })
    }

    fn commit(&mut self, changes: Vec<metadata::MetaChange>) -> Result<(), types::IoError> {
        self.timed(|s| {
            for c in &changes {
                s.grant_key(&c.key)?;
            }
            let changes: Vec<(String, Option<Vec<u8>>)> = changes.into_iter().map(|c| (c.key, c.value)).collect();
            s.b.meta.commit(&changes).map_err(meta_error)
        })
    }
}

use crate::runtime::bindings::ohos::cloudsync::thumbnails;
use crate::runtime::state::HostState;

impl thumbnails::Host for HostState {
    fn make_thumbnail(&mut self, image: Vec<u8>, max_edge: u32) -> Result<Vec<u8>, String> {
        if image.len() as u64 > crate::media::MAX_IMAGE_BYTES {
            return Err(format!("{} bytes is too large for a thumbnail", image.len()));
        }
        self.timed(|_| crate::media::thumbnail(&image, max_edge).map_err(|e| e.to_string()))
    }
}

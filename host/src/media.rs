//! Thumbnails of gallery photos, made on the device (the `image` crate):
//! a cloud-only photo still shows locally as a small picture.

use std::io::Cursor;

/// Images larger than this are not read for a thumbnail.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// Decoding may allocate at most this much (a decompression bomb stops here).
const MAX_DECODE_ALLOC: u64 = 512 << 20;

/// The bytes are no image this device can read (or decoding them would take too much memory).
#[derive(Debug, thiserror::Error)]
#[error("not an image this device can read: {0}")]
pub struct NotAnImage(String);

/// A JPEG of `image` (any format the `image` crate reads), its longer side
/// at most `max_edge` pixels, keeping the aspect ratio.
pub fn thumbnail(image: &[u8], max_edge: u32) -> Result<Vec<u8>, NotAnImage> {
    let mut reader = image::ImageReader::new(Cursor::new(image))
        .with_guessed_format()
        .map_err(|e| NotAnImage(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| NotAnImage(e.to_string()))?;
    let edge = max_edge.clamp(16, 4096);
    let small = decoded.thumbnail(edge, edge).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&small)
        .map_err(|e| NotAnImage(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thumbnail_keeps_the_aspect_ratio_within_the_edge() {
        let img = image::RgbImage::from_fn(800, 400, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let jpeg = thumbnail(&png, 256).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (256, 128));
        assert!(thumbnail(b"plain text", 256).is_err());
    }
}

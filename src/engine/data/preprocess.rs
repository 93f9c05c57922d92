//! From file bytes to the network's input: decode (EXIF orientation honoured, any colour type
//! to RGB), the evaluation transform (resize shorter side, centre crop) and normalisation.
//! Matches torchvision's `Resize(256, antialias=True)` + `CenterCrop(224)` on a PIL image.

use std::io::Cursor;

use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::engine::EngineError;
use crate::engine::model::BackboneSpec;

use crate::engine::limits::MAX_PIXELS;

/// Decodes an image file to RGB, applying its EXIF orientation. `file` names it in errors.
pub fn decode(file: &str, bytes: &[u8]) -> Result<RgbImage, EngineError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EngineError::image(file, format!("cannot read ({e})")))?;
    let format = reader.format();
    if format.is_none() {
        return Err(EngineError::image(
            file,
            "not an image (unknown or unsupported format)",
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| EngineError::image(file, format!("not a readable image ({e})")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(EngineError::image(file, format!("empty image ({w}x{h})")));
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(EngineError::image(
            file,
            format!(
                "too large ({w}x{h}, over {} megapixels)",
                MAX_PIXELS / 1_000_000
            ),
        ));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    decoder
        .set_limits(limits)
        .map_err(|e| EngineError::image(file, format!("too large ({e})")))?;
    let orientation = decoder.orientation().ok();
    let mut img = if format == Some(ImageFormat::Jpeg) {
        DynamicImage::ImageRgb8(strict_jpeg(file, bytes, w, h)?)
    } else {
        DynamicImage::from_decoder(decoder)
            .map_err(|e| EngineError::image(file, format!("broken or truncated image ({e})")))?
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.to_rgb8())
}

/// A JPEG's pixels as RGB, refused when its data ends before the picture it declares (a
/// truncated download, or a header that claims more than the file holds), as PIL refuses it,
/// instead of padding the rest with grey.
fn strict_jpeg(file: &str, bytes: &[u8], w: u32, h: u32) -> Result<RgbImage, EngineError> {
    use zune_core::bytestream::ZCursor;
    // Huffman coding spends at least one bit on each 8x8 block's DC value, so a file smaller
    // than that cannot hold the picture its header declares (the decoder would pad it).
    let blocks = u64::from(w.div_ceil(8)) * u64::from(h.div_ceil(8));
    if (bytes.len() as u64) * 8 < blocks {
        return Err(EngineError::image(
            file,
            format!(
                "broken image: {} bytes cannot hold the {w}x{h} picture its header declares",
                bytes.len()
            ),
        ));
    }
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(w as usize)
        .set_max_height(h as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder
        .decode()
        .map_err(|e| EngineError::image(file, format!("broken or truncated image ({e})")))?;
    RgbImage::from_raw(w, h, pixels).ok_or_else(|| {
        EngineError::image(file, "broken image (fewer pixels than its header declares)")
    })
}

/// Longest side of a working-size image relative to its shorter side: a 4:1 panorama keeps its
/// whole view; a longer strip is first cropped to 4:1 around its centre, so resizing a 1x60000
/// image gives 256x1024 (not 256x15,360,000, 11 GB). The evaluation crop is central, so it sees
/// the same pixels either way.
const MAX_ASPECT: u32 = 4;

/// Resizes so the shorter side is `short` (bilinear with antialiasing, as PIL), keeping the
/// aspect ratio; the longer side is truncated as torchvision does (`int(short * long / short_side)`).
/// Strips longer than [`MAX_ASPECT`] are cropped to it first, so the result's size is bounded.
pub fn resize_shorter(img: &RgbImage, short: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return RgbImage::new(short, short);
    }
    let cap =
        |side: u32| u32::try_from(u64::from(side) * u64::from(MAX_ASPECT)).unwrap_or(u32::MAX);
    let (cw, ch) = (w.min(cap(h)), h.min(cap(w)));
    if (cw, ch) != (w, h) {
        let strip = image::imageops::crop_imm(img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
        return resize_shorter(&strip, short);
    }
    let (nw, nh) = if w <= h {
        (
            short,
            (u64::from(short) * u64::from(h) / u64::from(w)) as u32,
        )
    } else {
        (
            (u64::from(short) * u64::from(w) / u64::from(h)) as u32,
            short,
        )
    };
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    // `Triangle` widens its support by the scale factor when shrinking: PIL's antialiased bilinear.
    image::imageops::resize(img, nw, nh, FilterType::Triangle)
}

/// Centre crop of `size` x `size`; offsets rounded half-to-even like Python's `round`.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let offset = |full: u32| -> u32 {
        let d = f64::from(full.saturating_sub(size)) / 2.0;
        d.round_ties_even() as u32
    };
    image::imageops::crop_imm(img, offset(w), offset(h), size.min(w), size.min(h)).to_image()
}

/// The evaluation transform: resize shorter side to `spec.resize`, centre crop `spec.input_size`.
pub fn eval_transform(img: &RgbImage, spec: &BackboneSpec) -> RgbImage {
    center_crop(&resize_shorter(img, spec.resize), spec.input_size)
}

/// Normalised NCHW values of one image, `(u8 - mean) / std` per channel.
fn normalize(img: &RgbImage, spec: &BackboneSpec) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) - spec.mean[c]) / spec.std[c];
        }
    }
    out
}

/// A batch tensor `[n, 3, h, w]` from equally sized images.
pub fn batch_tensor(images: &[RgbImage], spec: &BackboneSpec, device: &Device) -> Tensor<4> {
    let (w, h) = images.first().map(|i| i.dimensions()).unwrap_or((0, 0));
    let mut values = Vec::with_capacity(images.len() * 3 * (w * h) as usize);
    for img in images {
        debug_assert_eq!(img.dimensions(), (w, h));
        values.extend(normalize(img, spec));
    }
    Tensor::from_data(
        TensorData::new(values, [images.len(), 3, h as usize, w as usize]),
        device,
    )
}

/// An 8-bit image (grey or RGB) as PNG bytes, compressed fast: heatmaps, layer grids and
/// thumbnails are drawn at once, never stored.
pub fn png<P>(image: &image::ImageBuffer<P, Vec<u8>>) -> Result<Vec<u8>, EngineError>
where
    P: image::PixelWithColorType<Subpixel = u8>,
{
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::Sub)
        .write_image(image.as_raw(), image.width(), image.height(), P::COLOR_TYPE)
        .map_err(|e| EngineError::Unsupported(format!("cannot encode a PNG ({e})")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::LITE0;

    #[test]
    fn extreme_strips_are_resized_within_a_fixed_budget() {
        // A real 1 x 60000 PNG file, through the same path as a user's photo.
        let strip = RgbImage::from_fn(1, 60_000, |_, y| image::Rgb([(y % 251) as u8, 0, 0]));
        let mut png = Vec::new();
        strip
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let sample =
            crate::engine::data::load_sample("strip.png", &png, 0, &LITE0).expect("usable");
        assert_eq!(sample.image.dimensions(), (256, 1024));
        let wide = resize_shorter(&RgbImage::new(60_000, 3), 256);
        assert_eq!(wide.dimensions(), (1024, 256));
        // 4:1 and less keep their whole view, as torchvision.
        assert_eq!(
            resize_shorter(&RgbImage::new(1200, 300), 256).dimensions(),
            (1024, 256)
        );
    }

    #[test]
    fn resize_keeps_aspect_like_torchvision() {
        let img = RgbImage::new(451, 300);
        let r = resize_shorter(&img, 256);
        assert_eq!(r.dimensions(), (384, 256)); // int(256 * 451 / 300) = 384
        let img = RgbImage::new(300, 451);
        assert_eq!(resize_shorter(&img, 256).dimensions(), (256, 384));
    }

    #[test]
    fn crop_is_centred_with_bankers_rounding() {
        // 341 wide: (341-224)/2 = 58.5 rounds to 58 in Python.
        let mut img = RgbImage::new(341, 224);
        img.put_pixel(58, 0, image::Rgb([255, 0, 0]));
        let c = center_crop(&img, 224);
        assert_eq!(c.dimensions(), (224, 224));
        assert_eq!(c.get_pixel(0, 0)[0], 255);
    }

    #[test]
    fn normalisation_is_the_checkpoints_own() {
        let mut img = RgbImage::new(1, 1);
        img.put_pixel(0, 0, image::Rgb([127, 255, 0]));
        assert_eq!(normalize(&img, &LITE0), vec![0.0, 1.0, -127.0 / 128.0]);
    }

    fn encode(img: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    /// A real JPEG of a textured picture (so its scan data is not trivially short).
    fn photo_jpeg(w: u32, h: u32, grey: bool) -> Vec<u8> {
        let rgb = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let img = DynamicImage::ImageRgb8(rgb);
        let img = if grey {
            DynamicImage::ImageLuma8(img.to_luma8())
        } else {
            img
        };
        encode(&img, image::ImageFormat::Jpeg)
    }

    #[test]
    fn jpegs_decode_to_the_same_pixels_as_the_image_crate() {
        for grey in [false, true] {
            let jpeg = photo_jpeg(64, 48, grey);
            let ours = decode("p.jpg", &jpeg).unwrap();
            let theirs = image::load_from_memory(&jpeg).unwrap().to_rgb8();
            assert_eq!(ours.dimensions(), (64, 48));
            assert!(ours == theirs, "grey {grey}: pixels differ");
        }
    }

    #[test]
    fn truncated_or_lying_jpegs_are_refused_by_name() {
        let jpeg = photo_jpeg(64, 48, false);
        let cut = &jpeg[..jpeg.len() * 6 / 10];
        let err = decode("cut.jpg", cut).err().map(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_some_and(|e| e.contains("cut.jpg") && e.contains("truncated")),
            "{err:?}"
        );
        // The frame header (SOF0: FF C0, length, precision, height, width) claims 7000 x 7000
        // over the scan of a 64 x 48 picture.
        let mut lying = jpeg.clone();
        let sof = lying.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        lying[sof + 5..sof + 9].copy_from_slice(&[0x1B, 0x58, 0x1B, 0x58]);
        // (No `unwrap_err`: an accepted image would print 147 million values.)
        let err = decode("lying.jpg", &lying).err().map(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_some_and(|e| e.contains("lying.jpg") && e.contains("7000x7000")),
            "{err:?}"
        );
    }

    #[test]
    fn grey_alpha_and_16_bit_images_become_rgb() {
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(5, 3, image::Luma([77])));
        let rgb = decode("g.png", &encode(&grey, image::ImageFormat::Png)).unwrap();
        assert_eq!(rgb.dimensions(), (5, 3));
        assert_eq!(rgb.get_pixel(0, 0).0, [77, 77, 77]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            2,
            2,
            image::Rgba([10, 20, 30, 0]),
        ));
        assert_eq!(
            decode("a.png", &encode(&rgba, image::ImageFormat::Png))
                .unwrap()
                .get_pixel(1, 1)
                .0,
            [10, 20, 30]
        );
        let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Rgb([65535u16, 0, 32896]),
        ));
        assert_eq!(
            decode("d.png", &encode(&deep, image::ImageFormat::Png))
                .unwrap()
                .get_pixel(0, 0)
                .0,
            [255, 0, 128]
        );
    }

    #[test]
    fn absurdly_large_images_are_refused_before_decoding() {
        // A valid PNG header claiming 10000 x 10000 pixels (100 MP), with no pixel data.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(10000u32.to_be_bytes());
        ihdr.extend(10000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        png.extend(0u32.to_be_bytes());
        png.extend(b"IDAT");
        png.extend(crc32(b"IDAT").to_be_bytes());
        let err = decode("huge.png", &png).unwrap_err().to_string();
        assert!(err.starts_with("huge.png: too large (10000x10000"), "{err}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn non_images_are_refused_with_their_name() {
        let err = decode("notes.jpg", b"hello, this is text")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("notes.jpg: "), "{err}");
        let mut png = Vec::new();
        RgbImage::new(8, 8)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let err = decode("cut.png", &png[..png.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cut.png: "), "{err}");
        assert!(decode("ok.png", &png).is_ok());
    }
}

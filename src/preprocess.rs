//! Turning a user's picture into an MNIST-like 28×28 input, the way the MNIST
//! digits were made: grayscale (alpha over white), white ink on black, cropped to
//! the ink, scaled to fit 20×20 keeping the aspect ratio, and placed in a 28×28
//! frame with its center of mass at the center.

use anyhow::{anyhow, bail, Context, Result};
use image::ImageDecoder;
use std::path::Path;

use crate::files::read_file;

/// Images above this many pixels are refused before decoding (a 64-megapixel photo
/// decodes to 256 MB of RGBA).
pub const MAX_PIXELS: u64 = 64_000_000;

/// Picture files above this size are refused before reading: 64 megapixels of 16-bit
/// RGBA, uncompressed, are 512 MB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A 28×28 input in [0,1], row-major, ink high.
pub type Digit = [f32; 784];

/// Read a picture file and prepare it (`load_image`, then `prepare`); errors name the file.
pub fn load_digit(path: &Path) -> Result<Digit> {
    load_digit_bytes(path, &read_file(path, MAX_FILE_BYTES)?)
}

/// `load_digit` for a picture held in memory, named `path` in errors.
pub fn load_digit_bytes(path: &Path, bytes: &[u8]) -> Result<Digit> {
    prepare(&load_image_bytes(path, bytes)?).with_context(|| path.display().to_string())
}

/// Read and decode a picture file (see `load_image_bytes`); only regular files are read.
pub fn load_image(path: &Path) -> Result<image::RgbaImage> {
    load_image_bytes(path, &read_file(path, MAX_FILE_BYTES)?)
}

/// Decode a picture held in memory, named `path` in errors: refused when it is not an
/// image in a known format, has no pixels or over `MAX_PIXELS` (before decoding), or is
/// corrupt. Its EXIF orientation is applied, so a phone photo arrives upright.
pub fn load_image_bytes(path: &Path, bytes: &[u8]) -> Result<image::RgbaImage> {
    let p = path.display();
    // The image crate's errors repeat their cause in their source chain: keep the
    // message once, not the chain.
    let failed = |what: &str, e: image::ImageError| anyhow!("{p}: {what} ({e})");
    if bytes.is_empty() {
        bail!("{p}: the file is empty");
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{p}: cannot read"))?;
    if reader.format().is_none() {
        bail!("{p}: not an image in a known format (PNG, JPEG, BMP, GIF, TIFF, WebP)");
    }
    let mut decoder = reader.into_decoder().map_err(|e| failed("not a readable image", e))?;
    let (w, h) = decoder.dimensions();
    check_size(w as usize, h as usize).with_context(|| p.to_string())?;
    if w as u64 * h as u64 > MAX_PIXELS {
        bail!("{p}: {w}x{h} is over the {MAX_PIXELS}-pixel limit; scale the image down first");
    }
    let orientation = decoder.orientation().map_err(|e| failed("unreadable EXIF orientation", e))?;
    // The allocation limit `ImageReader::decode` would apply (512 MiB by default).
    let mut limits = image::Limits::default();
    limits.reserve(decoder.total_bytes()).map_err(|e| failed("too large to decode", e))?;
    decoder.set_limits(limits).map_err(|e| failed("too large to decode", e))?;
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| failed("corrupt or truncated image", e))?;
    img.apply_orientation(orientation);
    Ok(img.to_rgba8())
}

/// A picture needs pixels to have a border and ink.
fn check_size(w: usize, h: usize) -> Result<()> {
    if w == 0 || h == 0 {
        bail!("the picture is {w}x{h} pixels; there is nothing to read");
    }
    Ok(())
}

/// Prepare a decoded image; fails only for an image with no pixels or no ink at all.
pub fn prepare(img: &image::RgbaImage) -> Result<Digit> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    check_size(w, h)?;
    // Grayscale with alpha composited on white, in [0,1].
    let mut g: Vec<f32> = img
        .pixels()
        .map(|p| {
            let [r, gr, b, a] = p.0.map(|v| v as f32 / 255.0);
            let lum = 0.299 * r + 0.587 * gr + 0.114 * b;
            lum * a + (1.0 - a)
        })
        .collect();
    // The background is what the border is mostly made of; MNIST is white ink on black.
    let border_median = |g: &[f32]| {
        let mut b: Vec<f32> = (0..w)
            .flat_map(|x| [g[x], g[(h - 1) * w + x]])
            .chain((0..h).flat_map(|y| [g[y * w], g[y * w + w - 1]]))
            .collect();
        b.sort_by(f32::total_cmp);
        b[b.len() / 2]
    };
    if border_median(&g) > 0.5 {
        g.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    let bg = border_median(&g);
    // Ink relative to the background, stretched to [0,1].
    let max = g.iter().cloned().fold(0f32, f32::max);
    if max - bg < 0.1 {
        bail!("no digit found: the image is blank (contrast {:.2})", max - bg);
    }
    g.iter_mut().for_each(|v| *v = ((*v - bg) / (max - bg)).clamp(0.0, 1.0));
    // Bounding box of the ink (pixels at least 20% of full ink: ignores faint noise).
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if g[y * w + x] > 0.2 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = image::ImageBuffer::from_fn(cw as u32, ch as u32, |x, y| {
        image::Luma([g[(y0 + y as usize) * w + x0 + x as usize]])
    });
    // Fit in 20x20 keeping the aspect ratio.
    let scale = 20.0 / cw.max(ch) as f32;
    let (sw, sh) =
        (((cw as f32 * scale).round() as u32).clamp(1, 20), ((ch as f32 * scale).round() as u32).clamp(1, 20));
    let small: image::ImageBuffer<image::Luma<f32>, Vec<f32>> =
        image::imageops::resize(&crop, sw, sh, image::imageops::FilterType::Triangle);
    // Center of mass to the middle of 28x28.
    let (mut m, mut mx, mut my) = (0f32, 0f32, 0f32);
    for (x, y, p) in small.enumerate_pixels() {
        m += p.0[0];
        mx += p.0[0] * (x as f32 + 0.5);
        my += p.0[0] * (y as f32 + 0.5);
    }
    let (ox, oy) = ((14.0 - mx / m.max(1e-6)).round() as i64, (14.0 - my / m.max(1e-6)).round() as i64);
    let mut out = [0f32; 784];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        if (0..28).contains(&tx) && (0..28).contains(&ty) {
            out[ty as usize * 28 + tx as usize] = p.0[0].clamp(0.0, 1.0);
        }
    }
    Ok(out)
}

/// Save a prepared digit as an 8-bit grayscale PNG (what the network saw).
pub fn save_png(digit: &Digit, path: &Path) -> Result<()> {
    let img =
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(digit[(y * 28 + x) as usize] * 255.0).round() as u8]));
    img.save(path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "7"-ish stroke drawn at any size, colours and alpha.
    fn draw(size: u32, ink: [u8; 4], paper: [u8; 4]) -> image::RgbaImage {
        image::RgbaImage::from_fn(size, size, |x, y| {
            let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
            let top = (0.2..0.3).contains(&fy) && (0.25..0.75).contains(&fx);
            let diag = (fx - (0.75 - (fy - 0.25) * 0.5)).abs() < 0.05 && (0.25..0.85).contains(&fy);
            image::Rgba(if top || diag { ink } else { paper })
        })
    }

    #[test]
    fn black_on_white_and_white_on_black_agree() {
        let a = prepare(&draw(200, [0, 0, 0, 255], [255, 255, 255, 255])).unwrap();
        let b = prepare(&draw(200, [255, 255, 255, 255], [0, 0, 0, 255])).unwrap();
        let diff: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
        assert!(diff < 1.0, "{diff}");
        // Background is black, the glyph fits in the middle 20x20-ish and its mass is centred.
        assert_eq!(a[0], 0.0);
        let (m, mx) =
            a.iter().enumerate().fold((0f32, 0f32), |(m, mx), (i, &v)| (m + v, mx + v * ((i % 28) as f32 + 0.5)));
        assert!((mx / m - 14.0).abs() < 1.0, "{}", mx / m);
    }

    #[test]
    fn transparent_background_is_white_paper() {
        let a = prepare(&draw(64, [0, 0, 0, 255], [0, 0, 0, 0])).unwrap();
        assert!(a.iter().filter(|&&v| v > 0.5).count() > 20);
        assert_eq!(a[0], 0.0);
    }

    /// A GIF whose logical screen is `w`x`h`, holding one 1x1 frame.
    pub(crate) fn gif(w: u16, h: u16) -> Vec<u8> {
        let mut v = b"GIF89a".to_vec();
        v.extend(w.to_le_bytes());
        v.extend(h.to_le_bytes());
        v.extend([0x80, 0, 0, 0, 0, 0, 255, 255, 255]); // a 2-colour global table: black, white
        v.extend([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // a 1x1 frame at 0,0
        v.extend([2, 2, 0x44, 0x01, 0, 0x3b]); // its LZW data (colour 0), then the trailer
        v
    }

    #[test]
    fn pictures_without_pixels_are_refused_by_name() {
        let e = prepare(&image::RgbaImage::new(0, 0)).unwrap_err();
        assert!(e.to_string().contains("0x0 pixels"), "{e}");
        let e = prepare(&image::RgbaImage::new(5, 0)).unwrap_err();
        assert!(e.to_string().contains("5x0 pixels"), "{e}");
        load_image_bytes(Path::new("ok.gif"), &gif(1, 1)).unwrap();
        let e = format!("{:#}", load_image_bytes(Path::new("screen.gif"), &gif(0, 0)).unwrap_err());
        assert!(e.contains("screen.gif") && e.contains("0x0 pixels"), "{e}");
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 40 wide, 20 high, with EXIF orientation 6: the camera was turned, the picture
        // is 20 wide and 40 high.
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(40, 20, image::Rgb([255, 255, 255])))
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let tiff =
            [b"MM\0\x2a\0\0\0\x08\0\x01".as_slice(), &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]].concat();
        let mut app1 = vec![0xff, 0xe1, 0, (2 + 6 + tiff.len()) as u8];
        app1.extend(b"Exif\0\0");
        app1.extend(&tiff);
        jpeg.splice(2..2, app1);
        let img = load_image_bytes(Path::new("phone.jpg"), &jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (20, 40));
    }

    #[test]
    fn decoder_errors_say_their_cause_once() {
        let mut png = Vec::new();
        draw(40, [0, 0, 0, 255], [255, 255, 255, 255])
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png[16] ^= 0x55; // the width, under the header's CRC
        let e = format!("{:#}", load_image_bytes(Path::new("crc.png"), &png).unwrap_err());
        assert!(e.starts_with("crc.png: not a readable image"), "{e}");
        assert_eq!(e.matches("CRC error").count(), 1, "{e}");
    }

    #[test]
    fn blank_image_is_an_error() {
        let e = prepare(&image::RgbaImage::from_pixel(30, 30, image::Rgba([255, 255, 255, 255]))).unwrap_err();
        assert!(e.to_string().contains("blank"), "{e}");
    }
}

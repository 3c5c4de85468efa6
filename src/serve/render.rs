//! Pictures of an explanation as PNG data URLs, which the page shows as they are
//! and a script can save: the input, the saliency map and every feature map, in the
//! colours and scales of `gpu-cnn explain`'s sheet (`plot::sheet`), so the page and
//! the sheet show the same picture the same way.

use base64::Engine;
use image::{GrayImage, ImageFormat, RgbImage};
use serde_json::{json, Value};

use crate::executor::{Explanation, FeatureMap};
use crate::model::Model;
use crate::plot;

/// Channels of a feature map laid out in a grid, one tile per channel with a
/// one-pixel gap, each tile on viridis from its own least to its largest value (a
/// channel that barely fires still shows its pattern; one with a single value is
/// flat grey, as on the sheet).
pub fn feature_map_png(map: &FeatureMap) -> Option<(Vec<u8>, usize)> {
    let s = map.shape;
    // A flat layer (after Flatten or a Linear) is one row of values, one tile.
    let (tiles, th, tw) = if s.flat { (1, 1, s.c) } else { (s.c, s.h, s.w) };
    if map.values.len() != tiles * th * tw || tiles == 0 {
        return None;
    }
    let cols = (tiles as f64).sqrt().ceil() as usize;
    let rows = tiles.div_ceil(cols);
    let (w, h) = (cols * (tw + 1) - 1, rows * (th + 1) - 1);
    // The gaps are mid-gray so a dark tile's edge stays visible.
    let mut img = RgbImage::from_pixel(w as u32, h as u32, image::Rgb([96, 96, 96]));
    for (t, tile) in map.values.chunks(th * tw).enumerate() {
        let (lo, hi) = tile.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let (x0, y0) = ((t % cols) * (tw + 1), (t / cols) * (th + 1));
        for (i, &v) in tile.iter().enumerate() {
            let rgb = if hi > lo { plot::activation_rgb(((v - lo) / (hi - lo)) as f64) } else { plot::FLAT_TILE_RGB };
            img.put_pixel((x0 + i % tw) as u32, (y0 + i / tw) as u32, image::Rgb(rgb));
        }
    }
    Some((encode(image::DynamicImage::ImageRgb8(img)), cols))
}

/// The saliency map on the sheet's diverging scale: red where a pixel raises the
/// predicted class's score, blue where it lowers it, white where it does not matter;
/// ± the sheet's scale (a high percentile, so one extreme pixel leaves the rest visible).
pub fn saliency_png(saliency: &[f32], w: usize, h: usize) -> Option<Vec<u8>> {
    if saliency.len() != w * h || saliency.is_empty() {
        return None;
    }
    let scale = plot::saliency_scale(saliency);
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb(plot::signed_rgb(saliency[y as usize * w + x as usize] as f64 / scale))
    });
    Some(encode(image::DynamicImage::ImageRgb8(img)))
}

/// An input in [0,1] as gray levels, unscaled: what the network saw.
pub fn input_png(input: &[f32], w: usize, h: usize) -> Option<Vec<u8>> {
    if input.len() != w * h || input.is_empty() {
        return None;
    }
    let img = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        image::Luma([(input[y as usize * w + x as usize] * 255.0).round().clamp(0.0, 255.0) as u8])
    });
    Some(encode(image::DynamicImage::ImageLuma8(img)))
}

pub fn data_url(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

fn encode(img: image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding a small image into memory cannot fail.
    img.write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png).expect("PNG into memory");
    out
}

/// The explanation's JSON: every feature map with its layer, shape, range and
/// picture, and the input and saliency as numbers and pictures. An explanation
/// whose sizes do not fit the model is an error, not a panic.
pub fn explanation_json(model: &Model, input: &[f32], ex: &Explanation) -> Result<Value, String> {
    let (w, h) = (model.input.w, model.input.h);
    let mut maps = Vec::with_capacity(ex.maps.len());
    for m in &ex.maps {
        let (png, columns) = feature_map_png(m)
            .ok_or_else(|| format!("layer {}: {} values for shape {}", m.layer, m.values.len(), m.shape))?;
        let at = model.map_layer(&m.layer);
        let (lo, hi) = m.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        maps.push(json!({
            "layer": m.layer,
            "kind": at.map(|(i, _)| model.layers[i].layer.to_string()),
            "relu": at.is_some_and(|(_, relu)| relu),
            "shape": [m.shape.c, m.shape.h, m.shape.w],
            "flat": m.shape.flat,
            "min": lo,
            "max": hi,
            "columns": columns,
            "png": data_url(&png),
        }));
    }
    let single_channel = model.input.c == 1;
    let pictures = single_channel.then(|| Some((input_png(input, w, h)?, saliency_png(&ex.saliency, w, h)?))).flatten();
    let (input_url, saliency_url) = match pictures {
        Some((i, s)) => (Value::from(data_url(&i)), Value::from(data_url(&s))),
        None if single_channel => {
            return Err(format!("a saliency of {} values for a {w}x{h} input", ex.saliency.len()))
        }
        None => (Value::Null, Value::Null),
    };
    Ok(json!({
        "maps": maps,
        "input": input,
        "input_png": input_url,
        "saliency": ex.saliency,
        "saliency_png": saliency_url,
    }))
}

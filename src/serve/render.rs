//! Pictures of an explanation as PNG data URLs, which the page shows as they are
//! and a script can save: the input, the saliency map and every feature map.

use base64::Engine;
use image::{GrayImage, ImageFormat, RgbImage};
use serde_json::{json, Value};

use crate::executor::{Explanation, FeatureMap};
use crate::model::Model;

/// Channels of a feature map laid out in a grid, one tile per channel with a
/// one-pixel gap, each tile scaled on its own from its least to its largest value
/// (zero included): a channel that barely fires still shows its pattern.
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
    let mut img = GrayImage::from_pixel(w as u32, h as u32, image::Luma([96]));
    for (t, tile) in map.values.chunks(th * tw).enumerate() {
        let (lo, hi) = tile.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (x0, y0) = ((t % cols) * (tw + 1), (t / cols) * (th + 1));
        for (i, &v) in tile.iter().enumerate() {
            let level = (255.0 * (v - lo) / span).round().clamp(0.0, 255.0) as u8;
            img.put_pixel((x0 + i % tw) as u32, (y0 + i / tw) as u32, image::Luma([level]));
        }
    }
    Some((encode(image::DynamicImage::ImageLuma8(img)), cols))
}

/// The saliency map in two colours: red where a pixel raises the predicted class's
/// score, blue where it lowers it, black where it does not matter; scaled so the
/// strongest pixel is full colour.
pub fn saliency_png(saliency: &[f32], w: usize, h: usize) -> Option<Vec<u8>> {
    if saliency.len() != w * h || saliency.is_empty() {
        return None;
    }
    let peak = saliency.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if peak > 0.0 { 255.0 / peak } else { 0.0 };
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = saliency[y as usize * w + x as usize] * scale;
        let level = v.abs().round().clamp(0.0, 255.0) as u8;
        image::Rgb(if v >= 0.0 { [level, 0, 0] } else { [0, 0, level] })
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
        let at = model.layers.iter().position(|l| l.name == m.layer);
        // The GPU runs a convolution's ReLU in its epilogue: the map is after it.
        let relu = at.is_some_and(|i| i + 1 < model.layers.len() && model.relu_follows_conv(i + 1));
        let (lo, hi) = m.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        maps.push(json!({
            "layer": m.layer,
            "kind": at.map(|i| model.layers[i].layer.to_string()),
            "relu": relu,
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

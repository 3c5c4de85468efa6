//! The picture sheet of `gpu-cnn explain`: what happens inside the network for one
//! picture, top to bottom as the data flows. The picture as given and the 28×28 input
//! the network saw, the saliency map and the top-3 probabilities; the learned filters
//! of the first layer with weights; then every feature map with image shape (the
//! convolutions after their ReLUs, the pools), one tile per channel.

use anyhow::Result;
use image::RgbaImage;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

use super::colors::{diverging, saliency_scale, viridis, FLAT_TILE};
use super::{bold_style, elide, render, save, text_style, Area, MUTED};
use crate::executor::{Explanation, FeatureMap};
use crate::model::{Layer, Model, Op};

/// Every sheet is this wide; its height grows with the model's layers.
pub const SHEET_WIDTH: u32 = 1200;

const MARGIN: i32 = 24;
/// Side of the picture, input and saliency panels: 28 pixels × 7.
const BOX: i32 = 196;
/// Tiles are scaled by whole pixels to about this size, so that 18 fit in a row.
const TILE: usize = 60;
const GAP: i32 = 8;
const LABEL_H: i32 = 16;
const SECTION_HEAD: i32 = 50;
/// Beyond this many channels a section draws the first ones and says how many it left out.
const MAX_TILES: usize = 256;

/// The learned weights of a model's first layer with weights, one small picture per
/// output: a convolution's kernels (input channel 0), or, in a model without
/// convolutions, the first Linear's rows reshaped to the image it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    /// The state_dict key, e.g. `conv1.0.weight`.
    pub param: String,
    /// Its shape in the state_dict: `[out, in, k, k]` or `[out, in]`.
    pub shape: Vec<usize>,
    /// The weights as stored (`shape`, row-major).
    pub values: Vec<f32>,
    /// The layer, e.g. `Conv2d(1, 16, 5, 1, 2)`.
    pub layer: String,
    /// How each output's weights are drawn: (out, channels, h, w).
    grid: [usize; 4],
    linear: bool,
}

impl Filters {
    /// The first layer with weights, read from the flat parameter vector. Every valid
    /// model has one: None only for `params` too short for `model`.
    pub fn of(model: &Model, params: &[f32]) -> Option<Filters> {
        let i = model.layers.iter().position(|l| l.op.params().is_some())?;
        let l = &model.layers[i];
        let info = model.params.iter().find(|p| p.name.strip_suffix(".weight") == Some(l.name.as_str()))?;
        let values = params.get(info.offset..info.offset + info.numel())?.to_vec();
        let (grid, linear) = match l.layer {
            Layer::Conv2d { in_ch, out_ch, kernel, .. } => ([out_ch, in_ch, kernel, kernel], false),
            Layer::Linear { out_features, .. } => {
                // What the Linear reads, before it was flattened.
                let flatten = model.layers[..i].iter().rev().find(|p| p.layer == Layer::Flatten)?;
                let s = flatten.input;
                ([out_features, s.c, s.h, s.w], true)
            }
            _ => return None,
        };
        Some(Filters {
            param: info.name.clone(),
            shape: info.shape.clone(),
            values,
            layer: l.layer.to_string(),
            grid,
            linear,
        })
    }

    /// Output `o`'s weights for input channel 0, as an h×w picture.
    fn picture(&self, o: usize) -> &[f32] {
        let [_, c, h, w] = self.grid;
        &self.values[o * c * h * w..][..h * w]
    }
}

/// Everything one sheet shows.
pub struct Sheet<'a> {
    /// The title: which picture.
    pub name: &'a str,
    /// The lines under it: the weights, the model, what ran it.
    pub about: &'a [String],
    /// The picture as given.
    pub picture: &'a RgbaImage,
    /// What the network saw: the model's input (1, h, w), ink high.
    pub input: &'a [f32],
    pub model: &'a Model,
    pub explanation: &'a Explanation,
    pub filters: Option<&'a Filters>,
}

/// How a grid of tiles maps values to colours.
#[derive(Clone, Copy)]
enum Scale {
    /// Each tile from its own min (dark) to its own max (bright), on viridis.
    PerChannel,
    /// One scale for all tiles, ±this, white at 0.
    Diverging(f64),
}

/// A section: a title, a legend, and tiles of h×w values.
struct Grid<'a> {
    title: String,
    legend: String,
    scale: Scale,
    h: usize,
    w: usize,
    tiles: Vec<&'a [f32]>,
    /// Channels not drawn (beyond MAX_TILES).
    left_out: usize,
}

impl Grid<'_> {
    fn zoom(&self) -> i32 {
        (TILE / self.h.max(self.w)).max(1) as i32
    }

    fn tile_size(&self) -> (i32, i32) {
        (self.w as i32 * self.zoom(), self.h as i32 * self.zoom())
    }

    fn columns(&self) -> usize {
        let room = SHEET_WIDTH as i32 - 2 * MARGIN + GAP;
        ((room / (self.tile_size().0 + GAP)) as usize).max(1)
    }

    fn height(&self) -> i32 {
        let rows = self.tiles.len().div_ceil(self.columns()) as i32;
        let note = if self.left_out > 0 { LABEL_H + 4 } else { 0 };
        SECTION_HEAD + rows * (self.tile_size().1 + LABEL_H + GAP) + note + 12
    }

    fn draw(&self, area: &Area, top: i32) -> Result<()> {
        let width = SHEET_WIDTH as i32 - 2 * MARGIN;
        let title = elide(area, &self.title, &bold_style(16.0), width)?;
        area.draw(&Text::new(title, (MARGIN, top + 4), bold_style(16.0)))?;
        // The legend's line: the colour bar, its ends labelled, then what it means.
        let (lo, hi) = match self.scale {
            Scale::PerChannel => ("channel's min".to_string(), "channel's max".to_string()),
            Scale::Diverging(m) => (format!("−{}", short(m as f32)), format!("+{}", short(m as f32))),
        };
        let label = text_style(12.0);
        let bar_x = MARGIN + area.estimate_text_size(&lo, &label)?.0 as i32 + 6;
        match self.scale {
            Scale::PerChannel => color_bar(area, (bar_x, top + 28), viridis, (&lo, &hi))?,
            Scale::Diverging(_) => color_bar(area, (bar_x, top + 28), |t| diverging(2.0 * t - 1.0), (&lo, &hi))?,
        }
        let legend_x = bar_x + 120 + 4 + area.estimate_text_size(&hi, &label)?.0 as i32 + 16;
        let legend = elide(area, &self.legend, &label, SHEET_WIDTH as i32 - MARGIN - legend_x)?;
        area.draw(&Text::new(legend, (legend_x, top + 33), label.pos(Pos::new(HPos::Left, VPos::Center))))?;

        let (tw, th) = self.tile_size();
        let zoom = self.zoom();
        for (i, values) in self.tiles.iter().enumerate() {
            let (r, c) = ((i / self.columns()) as i32, (i % self.columns()) as i32);
            let (x, y) = (MARGIN + c * (tw + GAP), top + SECTION_HEAD + r * (th + LABEL_H + GAP));
            let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            match self.scale {
                Scale::PerChannel if hi > lo => {
                    let span = (hi - lo) as f64;
                    raster(area, (x, y), (self.w, self.h), zoom, |k| viridis((values[k] - lo) as f64 / span))?
                }
                Scale::PerChannel => {
                    area.draw(&Rectangle::new([(x, y), (x + tw - 1, y + th - 1)], FLAT_TILE.filled()))?;
                    let label = format!("all {}", short(lo));
                    let style = text_style(11.0).color(&MUTED).pos(Pos::new(HPos::Center, VPos::Center));
                    area.draw(&Text::new(label, (x + tw / 2, y + th / 2), style))?;
                }
                Scale::Diverging(m) => {
                    raster(area, (x, y), (self.w, self.h), zoom, |k| diverging(values[k] as f64 / m))?
                }
            }
            let style = text_style(11.0).color(&MUTED).pos(Pos::new(HPos::Center, VPos::Top));
            area.draw(&Text::new(i.to_string(), (x + tw / 2, y + th + 2), style))?;
        }
        if self.left_out > 0 {
            let rows = self.tiles.len().div_ceil(self.columns()) as i32;
            let y = top + SECTION_HEAD + rows * (th + LABEL_H + GAP);
            let note = format!("… and {} more channels, not drawn (all are in the --json file)", self.left_out);
            area.draw(&Text::new(note, (MARGIN, y), text_style(12.0).color(&MUTED)))?;
        }
        Ok(())
    }
}

/// A number as short as a label wants it: "0", "1.5", "0.032".
fn short(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A w×h raster with its top-left corner at `at`, each value a `zoom`-pixel square
/// coloured by `color(index)`.
fn raster(
    area: &Area,
    at: (i32, i32),
    (w, h): (usize, usize),
    zoom: i32,
    color: impl Fn(usize) -> RGBColor,
) -> Result<()> {
    for r in 0..h {
        for c in 0..w {
            let (x, y) = (at.0 + c as i32 * zoom, at.1 + r as i32 * zoom);
            // plotters fills rectangles including both corners.
            area.draw(&Rectangle::new([(x, y), (x + zoom - 1, y + zoom - 1)], color(r * w + c).filled()))?;
        }
    }
    Ok(())
}

/// A 120×10 horizontal colour bar at `at`, `color(t)` for t from 0 (left) to 1,
/// labelled at both ends.
fn color_bar(area: &Area, at: (i32, i32), color: impl Fn(f64) -> RGBColor, (lo, hi): (&str, &str)) -> Result<()> {
    let (w, h) = (120, 10);
    let style = text_style(12.0).pos(Pos::new(HPos::Right, VPos::Center));
    area.draw(&Text::new(lo.to_string(), (at.0 - 4, at.1 + h / 2), style))?;
    for i in 0..w {
        let t = i as f64 / (w - 1) as f64;
        area.draw(&Rectangle::new([(at.0 + i, at.1), (at.0 + i, at.1 + h)], color(t).filled()))?;
    }
    let style = text_style(12.0).pos(Pos::new(HPos::Left, VPos::Center));
    area.draw(&Text::new(hi.to_string(), (at.0 + w + 4, at.1 + h / 2), style))?;
    Ok(())
}

/// `text` broken into lines no wider than `width` pixels, at word boundaries.
fn wrap(area: &Area, text: &str, style: &TextStyle, width: i32) -> Result<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if area.estimate_text_size(&format!("{line} {word}"), style)?.0 as i32 <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    Ok(lines)
}

/// Wrapped text from `at` down; returns the y under its last line.
fn paragraph(area: &Area, text: &str, at: (i32, i32), width: i32, style: &TextStyle) -> Result<i32> {
    let line_h = (style.font.get_size() * 1.35).round() as i32;
    let mut y = at.1;
    for line in wrap(area, text, style, width)? {
        area.draw(&Text::new(line, (at.0, y), style.clone()))?;
        y += line_h;
    }
    Ok(y)
}

/// The picture as given, fitted into a BOX×BOX square at `at` (transparent parts on
/// white, as the preprocessing reads them).
fn picture_panel(area: &Area, at: (i32, i32), picture: &RgbaImage) -> Result<()> {
    let (w, h) = picture.dimensions();
    let fit = BOX as f64 / w.max(h) as f64;
    let (fw, fh) = (((w as f64 * fit).round() as u32).max(1), ((h as f64 * fit).round() as u32).max(1));
    // Enlarged pictures keep their pixels sharp; reduced ones are averaged.
    let filter = if fit > 1.0 { image::imageops::FilterType::Nearest } else { image::imageops::FilterType::Triangle };
    let small = image::imageops::resize(picture, fw, fh, filter);
    let (ox, oy) = (at.0 + (BOX - fw as i32) / 2, at.1 + (BOX - fh as i32) / 2);
    for (x, y, p) in small.enumerate_pixels() {
        let [r, g, b, a] = p.0.map(|v| v as f64 / 255.0);
        let over_white = |c: f64| ((c * a + 1.0 - a) * 255.0).round() as u8;
        let color = RGBColor(over_white(r), over_white(g), over_white(b));
        area.draw(&Pixel::new((ox + x as i32, oy + y as i32), color))?;
    }
    // Around the picture, not the square: a white picture's edges stay visible.
    frame(area, (ox, oy), (fw as i32, fh as i32))
}

/// A grey line just outside the `w`×`h` pixels at `at`.
fn frame(area: &Area, at: (i32, i32), (w, h): (i32, i32)) -> Result<()> {
    area.draw(&Rectangle::new([(at.0 - 1, at.1 - 1), (at.0 + w, at.1 + h)], RGBColor(190, 190, 190)))?;
    Ok(())
}

/// Top-3 probabilities as horizontal bars on a 0-100% track.
fn probabilities(area: &Area, at: (i32, i32), width: i32, probs: &[f32]) -> Result<()> {
    let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let track = width - 110;
    for (row, &(class, p)) in ranked.iter().take(3).enumerate() {
        let y = at.1 + row as i32 * 44;
        let label = bold_style(20.0).pos(Pos::new(HPos::Center, VPos::Center));
        area.draw(&Text::new(class.to_string(), (at.0 + 12, y + 13), label))?;
        let x0 = at.0 + 32;
        area.draw(&Rectangle::new([(x0, y), (x0 + track, y + 26)], RGBColor(236, 236, 236).filled()))?;
        let len = (track as f64 * p.clamp(0.0, 1.0) as f64).round() as i32;
        let color = if row == 0 { RGBColor(31, 119, 180) } else { RGBColor(140, 170, 200) };
        if len > 0 {
            area.draw(&Rectangle::new([(x0, y), (x0 + len, y + 26)], color.filled()))?;
        }
        let value = text_style(15.0).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(format!("{:.1}%", 100.0 * p), (x0 + track + 8, y + 13), value))?;
    }
    Ok(())
}

/// A map's section title: `conv2.2  Conv2d(32, 32, 5, 1, 2) + ReLU → (32,14,14)`.
fn map_title(model: &Model, map: &FeatureMap) -> String {
    let kind = match model.map_layer(&map.layer) {
        Some((i, true)) => format!("{} + ReLU", model.layers[i].layer),
        Some((i, false)) => model.layers[i].layer.to_string(),
        None => String::new(),
    };
    format!("{}  {kind} → {}", map.layer, map.shape)
}

/// The feature maps drawn as tiles: every one with image shape, in order.
fn map_grids<'a>(model: &Model, maps: &'a [FeatureMap]) -> Vec<Grid<'a>> {
    maps.iter()
        .filter(|m| !m.shape.flat)
        .map(|m| {
            let (lo, hi) = m.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let per = m.shape.h * m.shape.w;
            let tiles: Vec<&[f32]> = m.values.chunks(per).take(MAX_TILES).collect();
            Grid {
                title: map_title(model, m),
                legend: format!(
                    "each channel scaled to its own range; the whole layer's values lie in {} … {}",
                    short(lo),
                    short(hi)
                ),
                scale: Scale::PerChannel,
                h: m.shape.h,
                w: m.shape.w,
                left_out: m.shape.c - tiles.len(),
                tiles,
            }
        })
        .collect()
}

fn filter_grid(f: &Filters) -> Grid<'_> {
    let [out, c, h, w] = f.grid;
    let max = f.values.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE) as f64;
    let channel = if c > 1 { format!(", input channel 0 of {c}") } else { String::new() };
    let title = if f.linear {
        format!(
            "learned weights of the first layer, {} ({}{channel}): each output's as a {h}×{w} picture",
            f.param, f.layer
        )
    } else {
        format!("learned filters of the first convolution: {} ({}{channel})", f.param, f.layer)
    };
    let tiles: Vec<&[f32]> = (0..out.min(MAX_TILES)).map(|o| f.picture(o)).collect();
    Grid {
        title,
        legend: "one scale for all, white = 0: red weights add the input under them, blue ones subtract it".into(),
        scale: Scale::Diverging(max),
        h,
        w,
        left_out: out - tiles.len(),
        tiles,
    }
}

/// Where the panels start, under the title and `lines` lines about the run.
fn top(lines: usize) -> i32 {
    64 + 20 * lines as i32
}
const TOP_ROW: i32 = 315;

/// Draw the sheet and write it to `path` (PNG, atomically).
pub fn explain_sheet(s: &Sheet, path: &Path) -> Result<()> {
    let e = s.explanation;
    let mut grids: Vec<Grid> = s.filters.map(filter_grid).into_iter().collect();
    let has_conv = s.model.layers.iter().any(|l| matches!(l.op, Op::Conv2d(..)));
    grids.extend(map_grids(s.model, &e.maps));
    let not_drawn: Vec<String> =
        e.maps.iter().filter(|m| m.shape.flat).map(|m| format!("{} {}", m.layer, m.shape)).collect();
    // Said before the sections when there is no convolution, after them otherwise.
    let no_conv = (!has_conv).then_some(
        "This model has no convolution layers, so there are no convolution filters or feature maps to show.",
    );
    let foot = (!not_drawn.is_empty()).then(|| {
        format!(
            "Not drawn as tiles, having no image shape: {}. The last layer's scores give the probabilities \
             above; every value is in the .explain.json that --json writes.",
            not_drawn.join(", ")
        )
    });
    let lines = no_conv.iter().count() + foot.iter().count();
    let body: i32 = grids.iter().map(Grid::height).sum();
    let top = top(s.about.len());
    let height = top + TOP_ROW + body + 24 * lines as i32 + MARGIN;
    let img = render(SHEET_WIDTH, height as u32, |root| {
        let width = SHEET_WIDTH as i32 - 2 * MARGIN;
        let p = e.prediction as usize;
        let confidence = e.probs.get(p).map_or(String::new(), |p| format!(" ({:.1}%)", 100.0 * p));
        let title = elide(root, &format!("{}: the network says {p}{confidence}", s.name), &bold_style(22.0), width)?;
        root.draw(&Text::new(title, (MARGIN, 20), bold_style(22.0)))?;
        for (i, line) in s.about.iter().enumerate() {
            let line = elide(root, line, &text_style(14.0), width)?;
            root.draw(&Text::new(line, (MARGIN, 52 + 20 * i as i32), text_style(14.0).color(&MUTED)))?;
        }

        let columns = [MARGIN, MARGIN + 250, MARGIN + 500, MARGIN + 780];
        let caption = text_style(12.5);
        let (title_y, box_y) = (top, top + 28);
        let caption_y = box_y + BOX + 10;
        let head = |x: i32, t: &str| root.draw(&Text::new(t.to_string(), (x, title_y), bold_style(15.0)));

        head(columns[0], "the picture as given")?;
        picture_panel(root, (columns[0], box_y), s.picture)?;
        let (w, h) = s.picture.dimensions();
        let transparent = s.picture.pixels().any(|p| p.0[3] < 255);
        let given = format!("{w}×{h} pixels{}", if transparent { ", transparent parts shown on white" } else { "" });
        paragraph(root, &given, (columns[0], caption_y), 230, &caption)?;

        let side = s.model.input.w;
        let zoom = BOX / side.max(s.model.input.h) as i32;
        head(columns[1], &format!("what the network saw: {side}×{}", s.model.input.h))?;
        raster(root, (columns[1], box_y), (side, s.model.input.h), zoom, |k| {
            let g = (s.input[k].clamp(0.0, 1.0) * 255.0).round() as u8;
            RGBColor(g, g, g)
        })?;
        frame(root, (columns[1], box_y), (BOX, BOX))?;
        let seen = "grayscale, white ink on black, cropped to the ink, scaled into 20×20 and centred by its centre \
                    of mass, like the MNIST digits";
        paragraph(root, seen, (columns[1], caption_y), 230, &caption)?;

        head(columns[2], "saliency")?;
        let peak = saliency_scale(&e.saliency);
        raster(root, (columns[2], box_y), (side, s.model.input.h), zoom, |k| {
            let t = e.saliency[k] as f64 / peak;
            // The input in light grey underneath, so the colours sit on the strokes.
            let base = 255.0 - 110.0 * s.input[k].clamp(0.0, 1.0) as f64;
            let (c, a) = (diverging(t), t.abs().sqrt());
            let mix = |v: u8| (base + (v as f64 - base) * a).round() as u8;
            RGBColor(mix(c.0), mix(c.1), mix(c.2))
        })?;
        frame(root, (columns[2], box_y), (BOX, BOX))?;
        let bar = (columns[2] + BOX + 12, box_y);
        for i in 0..BOX {
            let t = 1.0 - 2.0 * i as f64 / (BOX - 1) as f64;
            root.draw(&Rectangle::new([(bar.0, bar.1 + i), (bar.0 + 10, bar.1 + i)], diverging(t).filled()))?;
        }
        let tick = text_style(12.0).pos(Pos::new(HPos::Left, VPos::Center));
        let ends = [
            (0, format!("≥ +{}", short(peak as f32))),
            (BOX / 2, "0".into()),
            (BOX, format!("≤ −{}", short(peak as f32))),
        ];
        for (y, label) in ends {
            root.draw(&Text::new(label, (bar.0 + 14, bar.1 + y), tick.clone()))?;
        }
        let meaning = format!(
            "d logit[{p}] / d input: red pixels, made brighter (more ink), would raise the score of {p}; \
             blue ones would lower it. The input is in grey underneath."
        );
        paragraph(root, &meaning, (columns[2], caption_y), 270, &caption)?;

        head(columns[3], "top-3 probabilities")?;
        probabilities(root, (columns[3], box_y + 8), width + MARGIN - columns[3], &e.probs)?;
        let softmax = "the softmax of the last layer's scores; the answer is the largest";
        paragraph(root, softmax, (columns[3], box_y + 150), width + MARGIN - columns[3], &caption)?;

        let mut y = top + TOP_ROW;
        if let Some(n) = no_conv {
            root.draw(&Text::new(n, (MARGIN, y), bold_style(15.0)))?;
            y += 24;
        }
        for g in &grids {
            g.draw(root, y)?;
            y += g.height();
        }
        if let Some(n) = &foot {
            let n = elide(root, n, &text_style(13.0), width)?;
            root.draw(&Text::new(n, (MARGIN, y), text_style(13.0).color(&MUTED)))?;
        }
        Ok(())
    })?;
    save(&img, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;
    use crate::model::Shape;

    #[test]
    fn the_filters_are_the_first_layer_with_weights_drawn_as_pictures() {
        let tutorial = Model::tutorial();
        let f = Filters::of(&tutorial, &tutorial.init_params(0)).unwrap();
        assert_eq!(
            (f.param.as_str(), f.shape.as_slice(), f.grid),
            ("conv1.0.weight", &[16, 1, 5, 5][..], [16, 1, 5, 5])
        );
        assert_eq!(f.picture(1), &tutorial.init_params(0)[25..50]);
        // Without convolutions, the first Linear's rows as the image it reads.
        for (spec, side) in [("flat fc10", 28), ("pool2 flat relu fc3 fc10", 14)] {
            let m = arch::parse(spec, Shape::image(1, 28, 28)).unwrap();
            let f = Filters::of(&m, &m.init_params(0)).unwrap();
            let rows = if side == 28 { 10 } else { 3 };
            assert_eq!((f.shape.clone(), f.grid), (vec![rows, side * side], [rows, 1, side, side]), "{spec}");
            assert!(f.linear);
        }
    }
}

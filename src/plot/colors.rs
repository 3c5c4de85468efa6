//! The colour scales of the pictures of the network's inside: activations on viridis,
//! signed values (weights, saliency) on a diverging scale, and the saliency's range.
//! `explain`'s sheet and `serve`'s page both draw with them, so a feature map or a
//! saliency map looks the same in either.

use plotters::style::RGBColor;

use super::ramp;

/// matplotlib's viridis (perceptually even, readable in grey): a channel's activations.
const VIRIDIS: [RGBColor; 8] = [
    RGBColor(68, 1, 84),
    RGBColor(70, 50, 127),
    RGBColor(54, 92, 141),
    RGBColor(39, 127, 143),
    RGBColor(31, 162, 136),
    RGBColor(74, 194, 110),
    RGBColor(160, 219, 57),
    RGBColor(254, 232, 37),
];

/// ColorBrewer's RdBu, blue for negative, white at 0, red for positive: weights and
/// gradients, whose sign matters.
const DIVERGING: [RGBColor; 9] = [
    RGBColor(5, 48, 97),
    RGBColor(33, 102, 172),
    RGBColor(67, 147, 195),
    RGBColor(146, 197, 222),
    RGBColor(247, 247, 247),
    RGBColor(244, 165, 130),
    RGBColor(214, 96, 77),
    RGBColor(178, 24, 43),
    RGBColor(103, 0, 31),
];

/// A constant channel (often all 0: its ReLU cut everything) has no range to scale.
pub(super) const FLAT_TILE: RGBColor = RGBColor(228, 228, 228);

pub(super) fn viridis(t: f64) -> RGBColor {
    ramp(&VIRIDIS, t)
}

/// `v` in [-1, 1] on the diverging scale.
pub(super) fn diverging(v: f64) -> RGBColor {
    ramp(&DIVERGING, (v + 1.0) / 2.0)
}

/// The colours as RGB bytes, for pictures drawn without plotters (`serve`'s page):
/// an activation at `t` in [0, 1] of its channel's range (viridis).
pub fn activation_rgb(t: f64) -> [u8; 3] {
    let c = viridis(t);
    [c.0, c.1, c.2]
}

/// A signed value `v` in [-1, 1] of its scale (blue, white at 0, red).
pub fn signed_rgb(v: f64) -> [u8; 3] {
    let c = diverging(v);
    [c.0, c.1, c.2]
}

/// A channel whose values are all one.
pub const FLAT_TILE_RGB: [u8; 3] = [FLAT_TILE.0, FLAT_TILE.1, FLAT_TILE.2];

/// The saliency's colour scale: ±the 99th percentile of |d logit / d input|, not its
/// maximum, so that a few extreme pixels do not leave the rest pale.
pub fn saliency_scale(saliency: &[f32]) -> f64 {
    let mut magnitudes: Vec<f32> = saliency.iter().map(|v| v.abs()).collect();
    magnitudes.sort_by(f32::total_cmp);
    let at = |q: f64| magnitudes.get(((magnitudes.len().max(1) - 1) as f64 * q) as usize).copied().unwrap_or(0.0);
    let p99 = at(0.99);
    (if p99 > 0.0 { p99 } else { at(1.0) }).max(f32::MIN_POSITIVE) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saliency_scale_is_not_set_by_one_extreme_pixel() {
        let mut s = vec![0.1f32; 784];
        s[3] = -50.0;
        assert_eq!(saliency_scale(&s), 0.1f32 as f64);
        // A map of zeros but a few pixels still gets a scale that shows them.
        let mut s = vec![0f32; 784];
        s[5] = 2.0;
        assert_eq!(saliency_scale(&s), 2.0);
        assert!(saliency_scale(&[0.0; 784]) > 0.0);
    }
}

//! A plotters drawing backend over an in-memory RGB image whose text is laid out and
//! rasterized with ab_glyph, from the DejaVu Sans subset compiled into the binary.
//!
//! plotters' own `ab_glyph` text support drops each glyph's left side bearing, which
//! shows as uneven letter spacing ("p revious"), and its `ttf` support finds fonts
//! through fontconfig/freetype. Shapes are left to plotters' rasterizer.

use ab_glyph::{Font, FontRef, GlyphId, OutlinedGlyph, PxScale, ScaleFont};
use image::RgbImage;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendTextStyle, DrawingBackend, DrawingErrorKind, FontStyle, FontTransform,
};
use std::convert::Infallible;
use std::sync::OnceLock;

pub struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

/// The fonts in `assets/fonts/`, parsed once.
pub fn fonts() -> Result<&'static Fonts, String> {
    static FONTS: OnceLock<Result<Fonts, String>> = OnceLock::new();
    let parse = |name: &str, bytes: &'static [u8]| {
        FontRef::try_from_slice(bytes)
            .map_err(|e| format!("assets/fonts/{name} (compiled in) is not a usable font: {e}"))
    };
    FONTS
        .get_or_init(|| {
            Ok(Fonts {
                regular: parse("DejaVuSans-subset.ttf", include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf"))?,
                bold: parse(
                    "DejaVuSans-Bold-subset.ttf",
                    include_bytes!("../../assets/fonts/DejaVuSans-Bold-subset.ttf"),
                )?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Draws on a borrowed image, which holds the picture once the drawing area is dropped.
pub struct Canvas<'a> {
    image: &'a mut RgbImage,
    fonts: &'static Fonts,
}

/// Glyph outlines placed on a line whose top-left corner is (0, 0), and the line's size.
struct Line {
    glyphs: Vec<OutlinedGlyph>,
    width: f32,
    height: f32,
}

impl<'a> Canvas<'a> {
    pub fn new(image: &'a mut RgbImage, fonts: &'static Fonts) -> Canvas<'a> {
        Canvas { image, fonts }
    }

    /// Paint `color` over a pixel with its alpha; outside the image, nothing.
    fn blend(&mut self, (x, y): BackendCoord, color: BackendColor) {
        if x < 0 || y < 0 || x as u32 >= self.image.width() || y as u32 >= self.image.height() {
            return;
        }
        let a = color.alpha.clamp(0.0, 1.0);
        let px = self.image.get_pixel_mut(x as u32, y as u32);
        let src = [color.rgb.0, color.rgb.1, color.rgb.2];
        for (d, s) in px.0.iter_mut().zip(src) {
            *d = (s as f64 * a + *d as f64 * (1.0 - a)).round() as u8;
        }
    }

    fn layout<S: BackendTextStyle>(&self, text: &str, style: &S) -> Line {
        let font = match style.style() {
            FontStyle::Bold => &self.fonts.bold,
            _ => &self.fonts.regular,
        };
        let scale = PxScale::from(style.size() as f32);
        let scaled = font.as_scaled(scale);
        let (mut caret, mut previous, mut glyphs) = (0.0, None::<GlyphId>, Vec::new());
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                caret += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(caret, scaled.ascent()));
            glyphs.extend(font.outline_glyph(glyph));
            caret += scaled.h_advance(id);
            previous = Some(id);
        }
        Line { glyphs, width: caret, height: scaled.ascent() - scaled.descent() }
    }
}

impl DrawingBackend for Canvas<'_> {
    type ErrorType = Infallible;

    fn get_size(&self) -> (u32, u32) {
        self.image.dimensions()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Infallible>> {
        Ok(())
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Infallible>> {
        Ok(())
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), DrawingErrorKind<Infallible>> {
        self.blend(point, color);
        Ok(())
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Infallible>> {
        let color = style.color();
        let line = self.layout(text, style);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -line.width / 2.0,
            HPos::Right => -line.width,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -line.height / 2.0,
            VPos::Bottom => -line.height,
        };
        let turn: FontTransform = style.transform();
        for g in &line.glyphs {
            let corner = g.px_bounds().min;
            let (left, top) = ((corner.x + dx).round() as i32, (corner.y + dy).round() as i32);
            g.draw(|x, y, c| {
                let (tx, ty) = turn.transform(left + x as i32, top + y as i32);
                let ink = BackendColor { alpha: color.alpha * c as f64, rgb: color.rgb };
                self.blend((pos.0 + tx, pos.1 + ty), ink);
            });
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Infallible>> {
        let line = self.layout(text, style);
        Ok((line.width.ceil() as u32, line.height.ceil() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_fonts_parse_and_cover_chart_text() {
        let f = fonts().unwrap();
        for c in "accuracy (%) 0123456789 loss × – ≥ é".chars() {
            assert_ne!(f.regular.glyph_id(c).0, 0, "no glyph for {c:?}");
            assert_ne!(f.bold.glyph_id(c).0, 0, "no bold glyph for {c:?}");
        }
    }
}

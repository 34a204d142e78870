//! Text on the charts: glyphs laid out and rasterized with ab_glyph, then
//! blended pixel by pixel into the plotters bitmap.
//!
//! plotters' own ab_glyph path drops each glyph's left bearing, so digits
//! come out unevenly spaced ("0.2 82"); laying glyphs out here, at their
//! real positions, avoids that and needs no system font lookup either: the
//! font is DejaVu Sans from Debian's fonts-dejavu-core, which
//! `scripts/testbed.sh bench-peers` installs.

use std::path::PathBuf;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

const FONT_DIR: &str = "/usr/share/fonts/truetype/dejavu";

struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn fonts() -> Result<&'static Fonts> {
    static FONTS: OnceLock<Result<Fonts, String>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let dir = std::env::var_os("INNOXIDE_BENCH_FONT_DIR").map_or_else(|| PathBuf::from(FONT_DIR), PathBuf::from);
            let load = |file: &str| -> Result<FontRef<'static>, String> {
                let path = dir.join(file);
                let bytes = std::fs::read(&path).map_err(|e| {
                    format!(
                        "reading the chart font {}: {e} (install fonts-dejavu-core: scripts/testbed.sh bench-peers)",
                        path.display()
                    )
                })?;
                // Loaded once and used for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                FontRef::try_from_slice(bytes).map_err(|e| format!("{}: {e}", path.display()))
            };
            Ok(Fonts {
                regular: load("DejaVuSans.ttf")?,
                bold: load("DejaVuSans-Bold.ttf")?,
            })
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// Checks the fonts can be loaded (before any chart is started).
pub fn ready() -> Result<()> {
    fonts().map(|_| ())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Start,
    Middle,
    End,
}

/// How a piece of text looks and which of its points `at` is.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub px: f32,
    pub bold: bool,
    pub color: RGBColor,
    pub horizontal: Align,
    pub vertical: Align,
}

impl Style {
    pub fn new(px: f32, color: RGBColor) -> Self {
        Self {
            px,
            bold: false,
            color,
            horizontal: Align::Start,
            vertical: Align::Start,
        }
    }

    pub fn bold(mut self) -> Self {
        self.bold = true;
        self
    }

    pub fn align(mut self, horizontal: Align, vertical: Align) -> Self {
        self.horizontal = horizontal;
        self.vertical = vertical;
        self
    }
}

/// Draws `text` with its anchor point (per `style`'s alignment) at `at`.
pub fn draw(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    text: &str,
    style: &Style,
    at: (i32, i32),
) -> Result<()> {
    let fonts = fonts()?;
    let font_ref = if style.bold {
        &fonts.bold
    } else {
        &fonts.regular
    };
    let font = font_ref.as_scaled(PxScale::from(style.px));

    let mut glyphs = Vec::new();
    let mut x = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = previous {
            x += font.kern(p, id);
        }
        glyphs.push((id, x));
        x += font.h_advance(id);
        previous = Some(id);
    }
    let width = x;
    let (ascent, descent) = (font.ascent(), font.descent());
    let left = at.0 as f32
        - match style.horizontal {
            Align::Start => 0.0,
            Align::Middle => width / 2.0,
            Align::End => width,
        };
    let baseline = at.1 as f32
        + match style.vertical {
            Align::Start => ascent,
            Align::Middle => (ascent + descent) / 2.0,
            Align::End => descent,
        };

    for (id, gx) in glyphs {
        let glyph = id.with_scale_and_position(style.px, point(left + gx, baseline));
        let Some(outlined) = font_ref.outline_glyph(glyph) else {
            continue; // a space
        };
        let bounds = outlined.px_bounds();
        let mut pixels = Vec::new();
        outlined.draw(|px, py, coverage| {
            if coverage > 0.01 {
                pixels.push((
                    bounds.min.x as i32 + px as i32,
                    bounds.min.y as i32 + py as i32,
                    coverage.min(1.0),
                ));
            }
        });
        for (px, py, coverage) in pixels {
            area.draw_pixel((px, py), &style.color.mix(f64::from(coverage)))
                .map_err(|e| anyhow!("{e:?}"))?;
        }
    }
    Ok(())
}

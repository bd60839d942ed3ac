//! `--plot FILE.svg`: latency by percentile (publish and end to end), drawn with `plotters`'
//! SVG backend. The x axis is log10(1 / (1 − percentile)), the usual HdrHistogram view, so
//! 90 %, 99 %, 99.9 % … are evenly spaced.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::error::{LoadgenError, LoadgenResult};

/// Up to 99.999 %.
const X_NINES_MAX: f64 = 5.0;
const SIZE_PX: (u32, u32) = (960, 540);

fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    h.iter_quantiles(5)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| {
            let nines = (1.0 / (1.0 - v.quantile_iterated_to())).log10().min(X_NINES_MAX);
            (nines, v.value_iterated_to() as f64 / 1000.0)
        })
        .collect()
}

fn percentile_label(nines: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-nines));
    let digits = (nines.round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// Draws each named histogram (µs) as one line.
pub fn write(path: &Path, title: &str, series: &[(&str, &Histogram<u64>)]) -> LoadgenResult<()> {
    let err = |e: &dyn std::fmt::Display| LoadgenError::Plot(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LoadgenError::file(parent))?;
    }
    let lines: Vec<(&str, Vec<(f64, f64)>)> =
        series.iter().filter(|(_, h)| !h.is_empty()).map(|(name, h)| (*name, points(h))).collect();
    let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(0.0f64, f64::max).max(0.001) * 1.1;
    let root = SVGBackend::new(path, SIZE_PX).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..X_NINES_MAX, 0f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, pts)) in lines.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_nines() {
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
    }
}

//! The chart of `docs/benchmarks.md`: ops/s per client, one bar per concurrency level, on a log
//! scale (the clients span three orders of magnitude, from 64-key batches to in-process hits).
//! Written as SVG with plotters (SVG backend only; text is laid out by plotters' built-in
//! estimate, so no font files are needed).

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::report::Row;

/// Colours of the concurrency levels, in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xb0, 0x7a, 0xa1),
];

/// Writes the chart of `rows` to `path` (SVG).
pub fn ops_chart(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let mut clients: Vec<&str> = Vec::new();
    let mut levels: Vec<usize> = Vec::new();
    for r in rows {
        if !clients.contains(&r.client.as_str()) {
            clients.push(&r.client);
        }
        if !levels.contains(&r.concurrency) {
            levels.push(r.concurrency);
        }
    }
    anyhow::ensure!(!clients.is_empty(), "no rows to chart");
    let ops = rows.iter().map(|r| r.ops_per_s).filter(|v| *v > 0.0);
    let low = ops.clone().fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
    let high = ops.fold(1.0, f64::max) * 2.0;

    let width = (110 * clients.len() as u32).max(800) + 100;
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE).context("drawing the chart")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ops/s per client and concurrency (log scale; higher is better)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..clients.len() as f64, (low..high).log_scale())
        .context("laying out the chart")?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("ops/s")
        .y_label_formatter(&|v| {
            if *v >= 1e6 {
                format!("{:.1}M", v / 1e6)
            } else if *v >= 1e3 {
                format!("{:.0}k", v / 1e3)
            } else {
                format!("{v:.0}")
            }
        })
        .draw()
        .context("drawing the axes")?;

    let slot = 0.8 / levels.len().max(1) as f64;
    for (j, &c) in levels.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let bars = clients.iter().enumerate().filter_map(|(i, client)| {
            let row = rows
                .iter()
                .find(|r| r.client == *client && r.concurrency == c)?;
            let x0 = i as f64 + 0.1 + j as f64 * slot;
            Some(Rectangle::new(
                [(x0, low), (x0 + slot * 0.9, row.ops_per_s.max(low))],
                colour.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .context("drawing the bars")?
            .label(format!("C={c}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .context("drawing the legend")?;

    // Client names under their bars, on two alternating rows so that long names do not collide.
    let style = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, client) in clients.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, low));
        let dy = if i % 2 == 0 { 8 } else { 26 };
        let text_width = 7 * client.len() as i32;
        root.draw(&Text::new(
            client.to_string(),
            (x - text_width / 2, y + dy),
            style.clone(),
        ))
        .context("drawing a label")?;
    }
    root.present().context("writing the chart")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(client: &str, c: usize, ops: f64) -> Row {
        Row {
            client: client.to_owned(),
            concurrency: c,
            ops_per_s: ops,
            p50_us: 1.0,
            p99_us: 2.0,
            ratio_vs_raw: None,
            p99_ratio_vs_raw: None,
            ratio_vs_reference: None,
            ratio_vs_raw_spread: None,
            ratio_vs_reference_spread: None,
            server_us_per_op: None,
            server_cpu_vs_raw: None,
            client_us_per_op: None,
            ops: 1,
            errors: 0,
            first_error: None,
            profile: "dev",
        }
    }

    #[test]
    fn the_chart_is_an_svg_with_every_client() {
        let rows = [
            row("raw", 1, 30_000.0),
            row("raw", 16, 140_000.0),
            row("near_cache", 1, 2_000_000.0),
            row("near_cache", 16, 3_000_000.0),
        ];
        let dir = crate::env::output_dir("bench-test").unwrap();
        let path = dir.join("chart.svg");
        ops_chart(&rows, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("near_cache") && svg.contains("C=16"));
        assert!(svg.matches("<rect").count() >= 4);
    }
}

//! The HTML report of a comparison: one self-contained page (`index.html`) with the table and
//! three plots drawn by `plotters` into inline SVG, readable offline: no scripts, no external
//! style sheets or fonts (the SVG text elements use the viewer's sans-serif font).
//!
//! - stack memory over time per policy (solid) with its live-data bound (thin), from `Sample`s;
//! - pages held per thread: how many threads peaked at each number of populated pages, per
//!   policy, from `ThreadPages`;
//! - the cost distribution of stack faults: the cost boot's log2 histograms of `stack_fault`,
//!   per dynamic policy.

use std::fmt::Write as _;

use dks_core::Policy;
use plotters::prelude::*;

use super::figures::{Comparison, Measurements, what};
use super::table::{self, HEADERS};

/// The size of each plot, pixels.
const PLOT_SIZE: (u32, u32) = (900, 420);
/// Tick labels and legends.
const LABEL_FONT: (&str, u32) = ("sans-serif", 14);
/// Axis descriptions.
const AXIS_FONT: (&str, u32) = ("sans-serif", 15);

/// Returns the colour of `policy`, the same in every plot.
fn colour(policy: Policy) -> RGBColor {
    match policy {
        Policy::Static => RGBColor(110, 110, 110),
        Policy::Fault => RGBColor(214, 39, 40),
        Policy::Guaranteed => RGBColor(31, 119, 180),
        Policy::Reclaim => RGBColor(44, 160, 44),
        Policy::Switch => RGBColor(255, 127, 14),
    }
}

/// Labels whole-number ticks only (counts and KiB have no fractions).
fn whole_numbers(y: &f64) -> String {
    if (y - y.round()).abs() < 1e-9 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Returns the whole page.
pub fn html(comparison: &Comparison, measurements: &Measurements) -> String {
    let policies: Vec<Policy> = comparison.policies.iter().map(|p| p.policy).collect();
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dks compare: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f0f0f0; }}
figure {{ margin: 2em 0; }}
figcaption {{ font-size: 0.9em; color: #555; }}
pre {{ font-size: 0.85em; }}
</style>
</head>
<body>
<h1>dks compare: {name}</h1>
<p>{description}</p>
<p>{cpus} CPU(s), max_stack {max_stack}K, {boots} workload boot(s). Costs are guest instructions
under <code>-icount shift=0</code>.</p>
"#,
        name = escape(&comparison.scenario),
        description = escape(&comparison.description),
        cpus = comparison.cpus,
        max_stack = comparison.max_stack_kib,
        boots = comparison.workload_boots,
    );

    page.push_str("<table>\n<tr>");
    for header in HEADERS {
        let _ = write!(page, "<th>{}</th>", escape(header));
    }
    page.push_str("</tr>\n");
    for policy in &comparison.policies {
        page.push_str("<tr>");
        for cell in table::cells(policy) {
            let _ = write!(page, "<td>{}</td>", escape(&cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
    let _ = write!(
        page,
        "<p>Non-stack page fault: {} instructions handled on the IST stack, {} moved back to \
         the interrupted stack.</p>\n<pre>{}</pre>\n",
        table::insns(comparison.fault_paths.insns_direct),
        table::insns(comparison.fault_paths.insns_bounce),
        escape(table::LEGEND)
    );

    for (title, caption, svg) in [
        (
            "Stack memory over time",
            "Populated stack memory per policy (thick) and its live-data bound (thin), KiB.",
            memory_over_time(&policies, measurements),
        ),
        (
            "Pages held per thread",
            "How many threads peaked at each number of populated stack pages, per policy.",
            pages_per_thread(&policies, measurements, comparison.max_stack_kib / 4),
        ),
        (
            "Stack fault cost",
            "How many stack faults cost between 2^i and 2^(i+1) guest instructions, per policy \
             (cost boot).",
            fault_costs(&policies, measurements),
        ),
    ] {
        let _ = write!(page, "<figure>\n<h2>{}</h2>\n", escape(title));
        match svg {
            Some(svg) => page.push_str(&svg),
            None => page.push_str("<p>No data: the kernel reported none for this plot.</p>"),
        }
        let _ = write!(
            page,
            "\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(caption)
        );
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// Draws with `draw` into an SVG string; `None` when drawing failed (an empty data set).
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Option<()>,
) -> Option<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).ok()?;
        draw(&root)?;
        root.present().ok()?;
    }
    Some(text)
}

fn memory_over_time(policies: &[Policy], m: &Measurements) -> Option<String> {
    if m.samples.is_empty() {
        return None;
    }
    let t_max = m.samples.iter().map(|s| s.t_ms).max()? as f64 / 1000.0;
    let kib_max = m
        .samples
        .iter()
        .map(|s| s.stack_kib.max(s.live_kib))
        .max()? as f64;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..t_max.max(0.001), 0.0..(kib_max * 1.1).max(1.0))
            .ok()?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("stack memory (KiB)")
            .y_label_formatter(&whole_numbers)
            .label_style(LABEL_FONT)
            .axis_desc_style(AXIS_FONT)
            .draw()
            .ok()?;
        for &policy in policies {
            let samples = m.samples_of(policy);
            let c = colour(policy);
            chart
                .draw_series(LineSeries::new(
                    samples
                        .iter()
                        .map(|s| (s.t_ms as f64 / 1000.0, s.stack_kib as f64)),
                    c.stroke_width(3),
                ))
                .ok()?
                .label(policy.to_string())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
            chart
                .draw_series(LineSeries::new(
                    samples
                        .iter()
                        .map(|s| (s.t_ms as f64 / 1000.0, s.live_kib as f64)),
                    c.stroke_width(1),
                ))
                .ok()?
                .label(format!("{policy} live bound"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1))
                });
        }
        chart
            .configure_series_labels()
            .label_font(LABEL_FONT)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::MiddleRight)
            .draw()
            .ok()
    })
}

/// Draws bars grouped by x value: `groups[i]` holds (policy, count per x) and x runs over
/// `xs`; `label` names an x value. The x axis counts hundredths of a slot, so the labels
/// (every 100) fall on the slots' centres.
fn grouped_bars(
    groups: &[(Policy, Vec<u64>)],
    xs: &[u32],
    x_desc: &str,
    y_desc: &str,
    label: &dyn Fn(u32) -> String,
) -> Option<String> {
    let y_max = groups.iter().flat_map(|(_, v)| v).copied().max()? as f64;
    if groups.is_empty() || xs.is_empty() || y_max == 0.0 {
        return None;
    }
    let slots = xs.len() as i32;
    let width = 80 / groups.len() as i32;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(-50..slots * 100 - 50, 0.0..y_max * 1.15)
            .ok()?;
        let x_label = |x: &i32| {
            if x % 100 == 0 && (0..slots).contains(&(x / 100)) {
                label(xs[(x / 100) as usize])
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(xs.len())
            .x_label_formatter(&x_label)
            .y_label_formatter(&whole_numbers)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(LABEL_FONT)
            .axis_desc_style(AXIS_FONT)
            .draw()
            .ok()?;
        for (g, (policy, values)) in groups.iter().enumerate() {
            let c = colour(*policy);
            let left = |i: usize| i as i32 * 100 - 40 + g as i32 * width;
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v > 0)
                        .map(|(i, v)| {
                            Rectangle::new(
                                [(left(i), 0.0), (left(i) + width, *v as f64)],
                                c.filled(),
                            )
                        }),
                )
                .ok()?
                .label(policy.to_string())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .label_font(LABEL_FONT)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .ok()
    })
}

fn pages_per_thread(policies: &[Policy], m: &Measurements, max_pages: u32) -> Option<String> {
    if m.thread_pages.is_empty() {
        return None;
    }
    let top = m.thread_pages.iter().map(|t| t.pages).max()?.max(max_pages);
    let bottom = m.thread_pages.iter().map(|t| t.pages).min()?.min(1);
    let xs: Vec<u32> = (bottom..=top).collect();
    let groups: Vec<(Policy, Vec<u64>)> = policies
        .iter()
        .map(|policy| {
            let counts = xs
                .iter()
                .map(|pages| {
                    m.thread_pages
                        .iter()
                        .filter(|t| t.policy == *policy && t.pages == *pages)
                        .map(|t| t.threads)
                        .sum()
                })
                .collect();
            (*policy, counts)
        })
        .collect();
    grouped_bars(
        &groups,
        &xs,
        "populated stack pages at the thread's peak",
        "threads",
        &|pages| pages.to_string(),
    )
}

fn fault_costs(policies: &[Policy], m: &Measurements) -> Option<String> {
    let histograms: Vec<(Policy, [u64; 24])> = policies
        .iter()
        .filter_map(|p| {
            m.cost(what::STACK_FAULT, Some(*p))
                .filter(|c| c.samples > 0)
                .map(|c| (*p, c.log2_histogram))
        })
        .collect();
    let used = |i: usize| histograms.iter().any(|(_, h)| h[i] > 0);
    let first = (0..24).find(|i| used(*i))?;
    let last = (0..24).rev().find(|i| used(*i))?;
    let xs: Vec<u32> = (first as u32..=last as u32).collect();
    let groups: Vec<(Policy, Vec<u64>)> = histograms
        .iter()
        .map(|(policy, h)| (*policy, xs.iter().map(|i| h[*i as usize]).collect()))
        .collect();
    grouped_bars(
        &groups,
        &xs,
        "guest instructions per stack fault (from 2^i)",
        "stack faults",
        &|i| format!("2^{i}"),
    )
}

#[cfg(test)]
mod tests;

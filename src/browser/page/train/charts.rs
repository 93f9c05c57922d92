//! Live training charts as inline SVG (no chart crate): loss and accuracy per epoch (train and
//! validation) and the head's learning rate over every step with the current step marked.
//! Dashed vertical lines show where `gradual` moves to its next stage.
//!
//! Each chart's SVG is written as one markup string and set with `innerHTML`: building dozens
//! of small SVG nodes one by one from wasm took over 100 ms per update, which would stall the
//! page at every epoch; the browser parses the string in well under a millisecond.

use leptos::prelude::*;

use crate::engine::train::plan::RunPlan;
use crate::engine::train::report::EpochReport;

const W: f64 = 320.0;
const H: f64 = 170.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;

/// Data ranges mapped onto the plot area.
struct Axes {
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn px(&self, v: f64) -> f64 {
        LEFT + (v - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (W - LEFT - RIGHT)
    }

    fn py(&self, v: f64) -> f64 {
        H - BOTTOM - (v - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (H - TOP - BOTTOM)
    }

    fn points(&self, data: &[(f64, f64)]) -> String {
        data.iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Grid lines with labels on the y axis, labels on the x axis, and stage boundaries.
    fn frame(
        &self,
        y_ticks: Vec<(f64, String)>,
        x_ticks: Vec<(f64, String)>,
        x_title: &'static str,
        boundaries: Vec<f64>,
    ) -> String {
        let mut svg = String::new();
        for (v, label) in y_ticks {
            let y = self.py(v);
            svg += &format!(
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"></line><text class="tick" x="{}" y="{y:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
                W - RIGHT,
                LEFT - 4.0,
                escape(&label)
            );
        }
        for (v, label) in x_ticks {
            svg += &format!(
                r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                self.px(v),
                H - BOTTOM + 13.0,
                escape(&label)
            );
        }
        for v in boundaries {
            let x = self.px(v);
            svg += &format!(
                r#"<line class="stage-line" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}"></line>"#,
                H - BOTTOM
            );
        }
        svg += &format!(
            r#"<text class="axis-title" x="{}" y="{}" text-anchor="middle">{x_title}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            H - 3.0
        );
        svg
    }
}

/// Text for SVG markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Epoch labels, at most about 8 of them.
fn epoch_ticks(epochs: usize) -> Vec<(f64, String)> {
    let every = epochs.div_ceil(8).max(1);
    (1..=epochs)
        .filter(|e| (e - 1) % every == 0 || *e == epochs)
        .map(|e| (e as f64, e.to_string()))
        .collect()
}

/// One line with a dot (and a tooltip) per epoch.
fn series(
    axes: &Axes,
    data: &[(f64, f64)],
    class: &'static str,
    label: &'static str,
    fmt: fn(f64) -> String,
) -> String {
    let mut svg = format!(
        r#"<polyline class="{class}" points="{}"></polyline>"#,
        axes.points(data)
    );
    for &(x, y) in data {
        svg += &format!(
            r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="3"><title>{}</title></circle>"#,
            axes.px(x),
            axes.py(y),
            escape(&format!("{label}, epoch {x}: {}", fmt(y)))
        );
    }
    svg
}

fn loss_text(v: f64) -> String {
    format!("{v:.3}")
}

fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn legend() -> impl IntoView {
    view! {
        <p class="chart-legend">
            <span class="key-line train"></span>"Training"
            <span class="key-line val"></span>"Validation"
        </p>
    }
}

/// Loss or accuracy per epoch.
fn epoch_chart(rows: &[EpochReport], shape: &RunPlan, accuracy: bool) -> impl IntoView + use<> {
    let epochs = shape.epochs().max(rows.len()).max(1);
    let pick = |f: fn(&EpochReport) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| (r.epoch as f64, f(r)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let (train, val) = if accuracy {
        (pick(|r| r.train_acc), pick(|r| r.val_acc))
    } else {
        (pick(|r| r.train_loss), pick(|r| r.val_loss))
    };
    let top = if accuracy {
        1.0
    } else {
        train.iter().chain(&val).map(|p| p.1).fold(0.1, f64::max) * 1.1
    };
    let axes = Axes {
        x: (0.5, epochs as f64 + 0.5),
        y: (0.0, top),
    };
    let fmt: fn(f64) -> String = if accuracy { percent } else { loss_text };
    let y_ticks = [0.0, 0.5, 1.0]
        .map(|f| {
            let v = top * f;
            (
                v,
                if accuracy {
                    percent(v)
                } else {
                    format!("{v:.2}")
                },
            )
        })
        .to_vec();
    let boundaries = shape
        .stage_boundaries()
        .into_iter()
        .map(|b| b as f64 + 0.5)
        .collect();
    let (name, testid) = if accuracy {
        ("Accuracy", "accuracy-chart")
    } else {
        ("Loss", "loss-chart")
    };
    let last = |d: &[(f64, f64)]| d.last().map_or("none yet".to_string(), |p| fmt(p.1));
    let summary = format!(
        "{name} per epoch, {} of {epochs} epochs done. Latest training {}, validation {}.",
        rows.len(),
        last(&train),
        last(&val)
    );
    let frame = axes.frame(y_ticks, epoch_ticks(epochs), "epoch", boundaries);
    let train_line = series(&axes, &train, "train", "training", fmt);
    let val_line = series(&axes, &val, "val", "validation", fmt);
    view! {
        <figure class="chart" data-testid=testid data-epochs=rows.len()>
            <figcaption>{name}</figcaption>
            <svg
                viewBox=format!("0 0 {W} {H}")
                role="img"
                aria-label=summary
                inner_html=format!("{frame}{train_line}{val_line}")
            ></svg>
            {legend()}
        </figure>
    }
}

/// Short number for rate labels: `1e-3`, `4e-5`.
fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.0e}")
    }
}

/// The head's rate over all steps of the run, `done` steps marked.
fn lr_chart(shape: &RunPlan, done: Signal<usize>) -> impl IntoView + use<> {
    let steps = shape.total_steps();
    let last = steps.saturating_sub(1).max(1) as f64;
    let top = shape.peak_lr() * 1.08;
    let axes = Axes {
        x: (0.0, last),
        y: (0.0, top),
    };
    let n = steps.clamp(2, 300);
    let curve: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let step =
                ((i as f64 * last / (n - 1) as f64).round() as usize).min(steps.saturating_sub(1));
            (step as f64, shape.lr_at(step))
        })
        .collect();
    let x_ticks = [0.0, 0.5, 1.0]
        .map(|f| {
            let s = (last * f).round();
            (s, (s as usize + 1).to_string())
        })
        .to_vec();
    let boundaries = shape
        .stage_boundary_steps()
        .into_iter()
        .map(|step| step as f64 - 0.5)
        .collect();
    let frame = axes.frame(
        vec![(0.0, "0".into()), (shape.peak_lr(), rate(shape.peak_lr()))],
        x_ticks,
        "step",
        boundaries,
    );
    let fixed = format!(
        r#"{frame}<polyline class="lr" points="{}"></polyline>"#,
        axes.points(&curve)
    );
    let marker_shape = shape.clone();
    let markup = move || {
        let d = done.get().min(steps);
        if d == 0 {
            return fixed.clone();
        }
        let step = d - 1;
        let x = axes.px(step as f64);
        format!(
            r#"{fixed}<line class="now-line" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}"></line><circle class="now" cx="{x:.1}" cy="{:.1}" r="4"></circle>"#,
            H - BOTTOM,
            axes.py(marker_shape.lr_at(step))
        )
    };
    let summary_shape = shape.clone();
    let summary = move || {
        let d = done.get().min(steps);
        format!(
            "Learning rate of the new head over {steps} steps; step {d} now, rate {}.",
            rate(summary_shape.lr_at(d.saturating_sub(1)))
        )
    };
    view! {
        <figure class="chart" data-testid="lr-chart" data-step=move || done.get() data-steps=steps>
            <figcaption>"Learning rate"</figcaption>
            <svg
                viewBox=format!("0 0 {W} {H}")
                role="img"
                aria-label=summary
                inner_html=markup
            ></svg>
            <p class="chart-legend">"The dot is the step training is on now."</p>
        </figure>
    }
}

/// The three charts of a run; nothing until a run has started.
#[component]
pub fn TrainCharts(
    rows: Signal<Vec<EpochReport>>,
    shape: Signal<Option<RunPlan>>,
    step: Signal<usize>,
) -> impl IntoView {
    view! {
        {move || {
            shape.get().map(|shape| {
                let epochs_shape = shape.clone();
                let stages = (shape.stages.len() > 1).then(|| view! {
                    <p class="muted small">
                        "Dashed lines: gradual unfreezing moves to its next stage and more layers start learning."
                    </p>
                });
                view! {
                    <div class="charts" aria-live="off">
                        {move || rows.with(|r| epoch_chart(r, &epochs_shape, false))}
                        {
                            let s = shape.clone();
                            move || rows.with(|r| epoch_chart(r, &s, true))
                        }
                        {lr_chart(&shape, step)}
                    </div>
                    {stages}
                }
            })
        }}
    }
}
